"""The main command under faults: it waits out a paused Airflow, and names the job's own error when the job stops.

Both run `python -m ops.demo` on the shared stack as a user would.

- Airflow's api-server is paused (SIGSTOP, by pid: the process of the
  `airflow standalone` group that listens on Airflow's port) for longer than
  the demo client's timeout once the run is triggered, then resumed
  (SIGCONT, always). The demo must finish, saying once that Airflow was slow.
- The job's state file says `waiting` for Cassandra, then `failed` for good
  (what the supervisor writes on a crash loop). The demo must show the
  waiting line, keep waiting, then fail with the job's own reason in one line.
  The demo reads the state file of a private checkpoint and counts rows in a
  private keyspace (so this run's rows never land there); the shared job keeps
  running untouched.
"""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlparse

import psutil
import pytest

from core.cassandra_schema import connect
from core.job_state import FAILED, WAITING, job_state_path, one_line, write_job_state
from core.settings import load_settings
from ops.airflow_api import AirflowClient
from stack import launcher
from stack.layout import Layout
from tests.e2e.demo_run import DemoProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.airflow, pytest.mark.spark]

PAUSE_SECONDS = 25  # longer than the client's per-request timeout, so at least one request times out
DEMO_SECONDS = 900


@pytest.fixture(scope="module")
def stack():
    """The shared stack with Airflow and the streaming job (started if missing, left running as found)."""
    settings = load_settings()
    layout = Layout(settings.stack_home)
    launcher.up(settings, layout, ["kafka", "registry", "cassandra", "datasource", "airflow", "stream"])
    return settings, layout


def api_server(settings, layout) -> psutil.Process:
    """The api-server: the child of the `airflow standalone` process group that listens on Airflow's port."""
    port = urlparse(settings.airflow_url).port
    standalone = psutil.Process(launcher.read_pid(layout, "airflow"))
    for child in standalone.children(recursive=True):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in child.net_connections("tcp")):
                return child
        except psutil.Error:
            continue
    raise AssertionError(f"no child of airflow standalone (pid {standalone.pid}) listens on port {port}")


def test_the_demo_waits_out_a_paused_airflow(stack):
    settings, layout = stack
    assert AirflowClient(settings).timeout < PAUSE_SECONDS
    server = api_server(settings, layout)
    demo = DemoProcess(["--users", "200", "--seed", f"e2e-pause-{uuid.uuid4().hex[:8]}"])
    demo.wait_for_line("    run manual__", timeout=DEMO_SECONDS)
    triggered = len(demo.lines)
    server.suspend()  # SIGSTOP: accepts connections (the kernel does), answers nothing
    try:
        paused_at = time.monotonic()
        while server.status() != psutil.STATUS_STOPPED:  # the signal is delivered asynchronously
            assert time.monotonic() - paused_at < 5, f"api-server (pid {server.pid}) not stopped: {server.status()}"
            time.sleep(0.1)
        while time.monotonic() - paused_at < PAUSE_SECONDS:
            assert server.status() == psutil.STATUS_STOPPED, "something resumed the api-server"
            time.sleep(1)
    finally:
        server.resume()  # SIGCONT, whatever happened
    result = demo.finish(timeout=DEMO_SECONDS)

    assert result.returncode == 0, f"demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
    assert "rows in Cassandra    200 from this run" in result.stdout
    after = demo.lines[triggered:]
    slow = [i for i, line in enumerate(after) if "Airflow slow to answer, retrying…" in line]
    assert slow, "".join(after)
    assert "no answer before the timeout)" in after[slow[0]], after[slow[0]]
    # Once per stretch: the first slow line of the pause is followed by its "answered again", not by more slow lines.
    again = next(i for i, line in enumerate(after) if "Airflow answered again after" in line and i > slow[0])
    assert [i for i in slow if slow[0] < i < again] == [], "".join(after)
    waited = int(re.search(r"answered again after (\d+)s", after[again]).group(1))
    assert waited >= PAUSE_SECONDS - 10 - 2, after[again]  # from the first timeout (10 s in) to the resume


@pytest.fixture
def private_corner(stack, tmp_path):
    """A keyspace no rows of the demo land in, and a checkpoint path whose state file the test writes."""
    settings, layout = stack
    keyspace = f"test_demo_job_{uuid.uuid4().hex[:10]}"
    checkpoint = tmp_path / "spark-checkpoints" / "users"
    yield {"CASSANDRA_KEYSPACE": keyspace, "SPARK_CHECKPOINT_DIR": str(checkpoint)}, job_state_path(str(checkpoint))
    with connect(settings) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)


def test_a_stopped_job_is_named_in_one_line(stack, private_corner):
    env, state_file = private_corner
    demo = DemoProcess(["--users", "10", "--seed", f"e2e-job-{uuid.uuid4().hex[:8]}"], env=env)
    demo.wait_for_line("==> Waiting for the streaming job", timeout=DEMO_SECONDS)

    write_job_state(state_file, WAITING, service="cassandra", detail="NoHostAvailable: 127.0.0.1:9042 refused")
    shown = demo.wait_for_line("    stream: waiting for cassandra since", timeout=60)
    assert shown.rstrip().endswith("NoHostAvailable: 127.0.0.1:9042 refused"), shown
    time.sleep(5)
    assert demo.process.poll() is None, "the demo gave up on a job that is only waiting"

    error = {"class": "SparkUpgradeException", "message": "writing dates before 1582-10-15 into Avro is ambiguous",
             "batch_id": 7, "offsets": {"users": {"0": 120}},
             "hint": "crash loop: batch 7 failed 3 times in a row; fix the cause, then `make stream`", "final": True}
    record = write_job_state(state_file, FAILED, error=error)
    stopped_at = time.monotonic()
    result = demo.finish(timeout=120)

    assert result.returncode == 1, result.stdout[-3000:]
    assert time.monotonic() - stopped_at < 30, "the demo kept waiting for a job that had stopped"
    failure = [line for line in result.stderr.splitlines() if line.startswith("demo: FAILED:")]
    assert failure == [f"demo: FAILED: stream: the Spark job stopped with 0/10 rows of this run written: {one_line(record)}"], result.stderr
    assert "exited with" not in result.stderr
