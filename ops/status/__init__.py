"""`make status`: the pipeline at a glance in the terminal (`python -m ops.status`).

    kafka      topic offsets, the streaming job's consumer-group lag, dead letters by stage and reason
    sections   schema subjects, Cassandra rows, DAG runs, the job's state and progress files
    processes  the embedded launcher's processes (pid files + psutil), read without importing stack/
    report     every section collected in parallel; JSON
    render     rich tables
The probes themselves live in core.health, shared with the launcher and the web monitor.
"""

from ops.status.report import StatusReport, collect, collect_services, to_json

__all__ = ["StatusReport", "collect", "collect_services", "to_json"]
