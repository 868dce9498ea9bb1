"""The names every part of the project spells the same way: services and the DAG.

The launcher (stack/), the status view, the web monitor, the demo and the DAG
all used to carry their own copies ("schema-registry" here, "registry" there);
one module below all of them keeps them from drifting apart.
"""

from __future__ import annotations

DAG_ID = "user_stream"  # the Airflow DAG that fetches, transforms and publishes users

# Services, as the launcher names them (`python -m stack up registry`, `.stack/run/registry.pid`).
KAFKA = "kafka"
REGISTRY = "registry"
CASSANDRA = "cassandra"
DATASOURCE = "datasource"
AIRFLOW = "airflow"
STREAM = "stream"  # the Spark streaming job
MONITOR = "monitor"  # the web monitor (ops.monitor)

# What the pipeline cannot run without: `make up` starts them and `make status --check` exits 1 without them.
CORE_SERVICES = (KAFKA, REGISTRY, CASSANDRA, DATASOURCE)
ALL_SERVICES = (*CORE_SERVICES, AIRFLOW, STREAM, MONITOR)
