"""The job as users start it, with one service down: it waits STREAM_FAULT_RETRY_SECONDS, then exits 1 naming the service."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.job_state import job_state_path, read_job_state
from core.settings import REPO_ROOT
from tests.ports import closed_port
from tests.spark.users import V1

pytestmark = [pytest.mark.integration, pytest.mark.spark]

# STREAM_FAULT_RETRY_SECONDS per case: short, but with room for one retry of the job's own. The registry
# client retries a refused connection itself (3 times, full jitter up to 1, 2 and 4 s): one of the job's
# attempts can take 7 s, and with a 4 s bound the job gave up before its first retry (a CI-like run).
BOUND = {"registry": 8, "cassandra": 4, "kafka": 4}


@pytest.mark.parametrize(("service", "env", "message"), [
    ("registry", lambda port: {"SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{port}/apis/ccompat/v7"},
     "schema registry at http://127.0.0.1:{port}/apis/ccompat/v7 did not answer"),
    ("cassandra", lambda port: {"CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": str(port)},
     "cannot reach Cassandra at 127.0.0.1:{port}"),
    ("kafka", lambda port: {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
     "cannot list Kafka topics"),
])
def test_a_service_down_at_start_is_named_and_the_job_exits_1(corner_factory, service, env, message):
    corner = corner_factory(f"down_{service}")
    corner.register(V1)  # everything else is ready: only the one service is missing
    port = closed_port()
    result = subprocess.run(
        [sys.executable, "-m", "spark.stream_job", "--master", "local[1]", "--available-now"],
        cwd=REPO_ROOT, env={**os.environ, **corner.env(), **env(port), "STREAM_FAULT_RETRY_SECONDS": str(BOUND[service])},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]  # the last thing a user sees
    assert last_line.startswith("spark.stream_job: ") and message.format(port=port) in last_line, result.stderr[-3000:]
    for name in ("RegistryError", "CassandraUnavailable", "TopicError"):  # printed, not raised out of main
        assert f"{name}:" not in result.stderr, result.stderr[-3000:]
    if service != "kafka":  # one topic listing waits out its 15 s timeout, longer than the whole bound here
        assert f"{service} unavailable, retry 1 in" in result.stderr, "each retry is logged"
    state = read_job_state(job_state_path(corner.settings.spark_checkpoint_dir))
    assert state["state"] == "failed" and state["error"]["class"] == "ServiceUnavailable", state
    assert message.format(port=port) in state["error"]["message"] and "make up" in state["error"]["hint"], state
