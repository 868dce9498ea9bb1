"""Tests of the status view (ops.status) and the probes it shares with the launcher (core.health), without the stack.

Pure tests (lag arithmetic, the job's state and progress files, the launcher's
pid files, rendering, exit codes), then closed ports (every service down).
Against real services: test_status_services.py.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from core import health, job_state, names
from core.settings import REPO_ROOT
from ops.status import kafka, processes, render, report, sections
from ops.status.__main__ import main, parse_args
from ops.status.kafka import DeadLetterCounts, GroupLag, PartitionLag, TopicOffsets
from ops.status.report import ServiceRow, StatusReport
from ops.status.sections import DagRunsView, RowCount, SchemaRegistryView, StreamJob
from tests.ops.conftest import settings_for
from tests.ports import closed_port


def users_offsets(**latest: int) -> TopicOffsets:
    """TopicOffsets for topic "users" from p0=..., p1=... keyword arguments (earliest 0)."""
    end = {int(k[1:]): v for k, v in latest.items()}
    return TopicOffsets("users", earliest={p: 0 for p in end}, latest=end)


# --- Lag from the consumer group -----------------------------------------------------------------


def test_lag_is_end_offset_minus_committed_offset():
    lags = kafka.compute_lag(users_offsets(p0=25, p1=12, p2=9), {0: 20, 1: 12, 2: 5})
    assert [(p.partition, p.end_offset, p.committed, p.lag) for p in lags] == [(0, 25, 20, 5), (1, 12, 12, 0), (2, 9, 5, 4)]


def test_partition_without_a_commit_lags_by_all_retained_messages():
    topic = TopicOffsets("users", earliest={0: 0, 1: 100}, latest={0: 10, 1: 150})
    lags = kafka.compute_lag(topic, {0: 10, 1: None})
    assert [(p.partition, p.committed, p.lag) for p in lags] == [(0, 10, 0), (1, None, 50)]


def test_commit_ahead_of_a_recreated_topic_shows_negative_lag():
    (lag,) = kafka.compute_lag(users_offsets(p0=3), {0: 500})
    assert lag.lag == -497
    view = GroupLag("g", "users", [lag])
    assert "was the topic deleted and re-created" in render.text(render.stream_section(StreamJob("s", "p"), view))


@pytest.mark.parametrize(("topic", "expected"), [
    (TopicOffsets("users", error="kafka down: connection refused"), "kafka down: connection refused"),
    (TopicOffsets("users", exists=False), "topic users does not exist yet"),
])
def test_group_lag_of_a_topic_that_is_down_or_missing_says_why(topic, expected):
    view = kafka.group_lag(settings_for(), topic, timeout=1)
    assert (view.partitions, view.error, view.total) == ([], expected, None)


# --- The job's own files: state (core.job_state) and progress (spark.progress) -------------------


def job_files(tmp_path: Path, state: dict | None, progress: dict | None):
    checkpoint = tmp_path / "spark-checkpoints" / "users"
    settings = settings_for(spark_checkpoint_dir=str(checkpoint), stack_home=tmp_path)
    if state is not None:
        job_state.job_state_path(str(checkpoint)).parent.mkdir(parents=True, exist_ok=True)
        job_state.job_state_path(str(checkpoint)).write_text(json.dumps(state))
    if progress is not None:
        (checkpoint.parent / "users.progress.json").parent.mkdir(parents=True, exist_ok=True)
        (checkpoint.parent / "users.progress.json").write_text(json.dumps(progress))
    return settings


WAITING = {"state": "waiting", "since": "2026-01-01T00:00:00.000Z", "service": "cassandra",
           "detail": "NoHostAvailable: connection refused", "pid": 1}
PROGRESS = {"batchId": 4, "numInputRows": 17, "processedRowsPerSecond": 3.4, "timestamp": "2026-01-01T00:00:00.000Z",
            "batch_id": 4, "totals": {"records_in": 40, "rows_written": 38, "dead_lettered": 2, "batches": 5}}


def test_stream_job_reads_the_state_line_and_the_progress(tmp_path):
    view = sections.stream_job(job_files(tmp_path, WAITING, PROGRESS))
    assert view.error is None
    assert view.state_line == "waiting for cassandra since 2026-01-01T00:00:00.000Z: NoHostAvailable: connection refused"
    assert view.progress == PROGRESS
    text = render.text(render.stream_section(view, GroupLag("userstream-spark", "users")))
    assert "state: waiting for cassandra since 2026-01-01T00:00:00.000Z" in text
    assert "numInputRows=17" in text and "dead_lettered=2" in text


def test_stream_job_that_never_ran_says_how_to_start_it(tmp_path):
    view = sections.stream_job(job_files(tmp_path, None, None))
    assert (view.state, view.progress) == (None, None)
    assert view.error == "the streaming job has not run with this checkpoint yet (`make stream` starts it)"


def test_a_corrupt_state_file_is_an_error_not_a_crash(tmp_path):
    settings = job_files(tmp_path, None, None)
    path = job_state.job_state_path(settings.spark_checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"state": "runn')
    view = sections.stream_job(settings)
    assert view.state is None and view.error.startswith("Unterminated string")


def test_stream_row_up_while_the_process_runs_and_the_state_is_not_failed(tmp_path):
    settings = job_files(tmp_path, WAITING, None)
    job = sections.stream_job(settings)
    me = processes.ProcessInfo(names.STREAM, os.getpid(), 10, "/x/stream.log")
    row = report.stream_row(settings, job, me)
    assert (row.up, row.pid, row.log) == (True, os.getpid(), "/x/stream.log")
    assert row.detail.startswith("waiting for cassandra since")
    assert row.version.startswith("spark 3.5")


def test_stream_row_of_a_failed_job_is_down_with_its_error(tmp_path):
    failed = {"state": "failed", "since": "x", "pid": os.getpid(),
              "error": {"class": "SparkUpgradeException", "message": "ancient date", "batch_id": 7, "hint": "fix it"}}
    settings = job_files(tmp_path, failed, None)
    row = report.stream_row(settings, sections.stream_job(settings), None)
    assert not row.up
    assert row.detail == "stopped in batch 7 with SparkUpgradeException: ancient date. fix it"


def test_stream_row_of_an_exited_job_shows_its_last_state(tmp_path):
    exited = subprocess.Popen(["true"])
    exited.wait()
    settings = job_files(tmp_path, {"state": "running", "since": "2026-01-01T00:00:00.000Z", "pid": exited.pid}, None)
    row = report.stream_row(settings, sections.stream_job(settings), None)
    assert (row.up, row.pid) == (False, None)
    assert row.detail == "not running (last: running since 2026-01-01T00:00:00.000Z)"


# --- The launcher's pid files, read with psutil (no import of stack/) ------------------------------


def test_launcher_processes_reads_pid_files_without_the_launcher(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kafka.pid").write_text(f"{os.getpid()}\n")
    exited = subprocess.Popen(["true"])
    exited.wait()
    (tmp_path / "run" / "registry.pid").write_text(str(exited.pid))
    rows = processes.launcher_processes(tmp_path)
    assert set(rows) == {"kafka", "registry"}
    assert (rows["kafka"].pid, rows["kafka"].log) == (os.getpid(), str(tmp_path / "logs" / "kafka.log"))
    assert rows["kafka"].rss_mb > 10  # this pytest process
    assert (rows["registry"].pid, rows["registry"].stale_pid) == (None, exited.pid)
    assert (tmp_path / "run" / "registry.pid").exists(), "a read-only view leaves the pid file to the launcher"


def test_a_zombie_is_not_a_running_process(tmp_path):
    """An exited child nobody reaped yet keeps its pid: the view must still call it down."""
    import psutil

    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "stream.pid").write_text(str(zombie.pid))
        assert processes.launcher_processes(tmp_path)["stream"].stale_pid == zombie.pid
    finally:
        zombie.wait()


def test_the_status_view_and_the_probes_import_no_launcher():
    """No circle between the status view and the launcher: neither ops/status nor core/health imports stack/."""
    files = [*(REPO_ROOT / "ops" / "status").glob("*.py"), REPO_ROOT / "core" / "health.py", REPO_ROOT / "core" / "names.py"]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {m}" for m in modules if m == "stack" or m.startswith("stack.")]
            if path.parent.name == "core":
                offenders += [f"{path.name}: {m}" for m in modules if m.startswith("ops")]
    assert offenders == []


# --- Reasons, passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "expected"), [
    (ConnectionRefusedError(111, "Tried connecting to [('127.0.0.1', 9042)]. Last error: Connection refused"), "connection refused"),
    (requests.ConnectionError("HTTPConnectionPool(host='localhost', port=1): Max retries exceeded "
                              "(Caused by NewConnectionError('<x>: Failed to establish a new connection: "
                              "[Errno 111] Connection refused'))"), "connection refused"),
    (requests.ReadTimeout("read timed out"), "no answer before the timeout"),
    (RuntimeError(""), "RuntimeError"),
])
def test_reason_is_one_short_line(exc, expected):
    assert health.reason(exc) == expected


def test_kafka_reason_strips_librdkafka_decoration():
    message = "localhost:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)"
    assert health.kafka_reason(message) == "connection refused"


def test_airflow_password_prefers_the_setting(tmp_path):
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "from-file"}')
    assert sections.airflow_password(settings_for(stack_home=tmp_path)) == "from-file"
    assert sections.airflow_password(settings_for(stack_home=tmp_path, airflow_admin_password="set")) == "set"
    assert sections.airflow_password(settings_for(stack_home=tmp_path / "empty")) is None


def test_dag_runs_without_a_password_says_how_to_get_one(tmp_path):
    view = sections.dag_runs(settings_for(stack_home=tmp_path), timeout=1)
    assert view.runs == [] and view.error.startswith("no Airflow password: set AIRFLOW_ADMIN_PASSWORD")


# --- Rendering, JSON and exit codes -------------------------------------------------------------------


def all_down_report() -> StatusReport:
    down = [ServiceRow(name, f"addr-{name}", False, "connection refused") for name in names.ALL_SERVICES]
    return StatusReport(
        generated_at="2024-11-25T00:00:00+00:00",
        services=down,
        topics=[TopicOffsets("users", error="kafka down: connection refused")],
        lag=GroupLag("userstream-spark", "users", error="kafka down: connection refused"),
        stream=StreamJob("/tmp/s.json", "/tmp/p.json", error="the streaming job has not run with this checkpoint yet"),
        dead_letters=DeadLetterCounts("users.dead_letter", error="kafka down: connection refused"),
        schemas=SchemaRegistryView("http://localhost:2", error="connection refused"),
        cassandra=RowCount("userstream.users", error="connection refused"),
        dag_runs=DagRunsView(names.DAG_ID, error="connection refused"),
    )


def test_render_shows_every_section_down_with_its_reason():
    text = render.text(render.report_sections(all_down_report()))
    for heading in ("Services", "Topics", "Stream (consumer group userstream-spark)", "Dead letters", "Schemas",
                    "Cassandra", "DAG runs (user_stream, newest first)"):
        assert heading in text
    assert text.count(" DOWN ") == 4 and text.count(" down ") == 3  # the core four, then airflow, stream, monitor
    assert text.count("unavailable: ") == 7  # topics, the job, its lag, dead letters, schemas, Cassandra, DAG runs
    assert "lag unavailable: kafka down: connection refused" in text


def test_render_counts_dead_letters_by_stage_and_reason():
    counts = DeadLetterCounts("users.dead_letter", by_stage={"transform": 2, "decode": 1}, scanned=3, expected=5, complete=False,
                              by_reason={"transform": {"postcode missing": 2}, "decode": {"unknown schema id 99": 1}})
    lines = [line.split() for line in render.text(render.dead_letters_section(counts)).splitlines()]
    assert ["decode", "unknown", "schema", "id", "99", "1"] in lines
    assert ["transform", "postcode", "missing", "2"] in lines
    assert ["total", "3"] in lines
    assert ["partial:", "scanned", "3", "of", "5", "before", "the", "time", "limit"] in lines


def test_render_lag_rows_and_total():
    lag = GroupLag("userstream-spark", "users", [PartitionLag("users", 0, 25, 20, 5), PartitionLag("users", 1, 9, None, 9)])
    lines = [line.split() for line in render.text(render.stream_section(StreamJob("s", "p"), lag)).splitlines()]
    assert ["users", "0", "25", "20", "5"] in lines and ["users", "1", "9", "-", "9"] in lines
    assert ["total", "lag:", "14"] in lines


def test_json_output_is_the_same_data():
    data = json.loads(report.to_json(all_down_report()))
    assert data["core_down"] == ["kafka", "registry", "cassandra", "datasource"]
    assert data["services"][0] == {"name": "kafka", "address": "addr-kafka", "up": False, "detail": "connection refused",
                                   "version": None, "pid": None, "rss_mb": None, "log": None, "core": True}
    assert data["lag"] == {"group": "userstream-spark", "topic": "users", "partitions": [],
                           "error": "kafka down: connection refused", "total": None}


@pytest.mark.parametrize(("check", "core_up", "expected"), [(False, False, 0), (True, False, 1), (True, True, 0)])
def test_check_exits_1_only_when_a_core_service_is_down(monkeypatch, capsys, check, core_up, expected):
    built = all_down_report()
    for service in built.services:
        service.up = core_up if service.core else False
    monkeypatch.setattr("ops.status.__main__.collect", lambda settings, timeout, scan_seconds: built)
    assert main(["--check"] if check else [], settings=settings_for()) == expected
    captured = capsys.readouterr()
    assert "Services" in captured.out
    assert ("status: core service(s) down: kafka, registry, cassandra, datasource" in captured.err) == (expected == 1)


def test_watch_needs_a_positive_interval(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--watch", "0"])
    assert "--watch needs a positive number of seconds" in capsys.readouterr().err


# --- Real sockets ---------------------------------------------------------------------------------------


def test_services_that_are_down_are_shown_down_without_crashing(tmp_path):
    port = closed_port()
    settings = settings_for(
        kafka_bootstrap_servers=f"127.0.0.1:{port}", schema_registry_url=f"http://127.0.0.1:{port}", cassandra_port=port,
        datasource_url=f"http://127.0.0.1:{port}/api/", airflow_url=f"http://127.0.0.1:{port}", monitor_url=f"http://127.0.0.1:{port}",
        airflow_admin_password="unused", spark_checkpoint_dir=str(tmp_path / "cp"),
        stack_home=tmp_path,  # no launcher pid files: only the probes count
    )
    started = time.monotonic()
    built = report.collect(settings, timeout=1.0, scan_seconds=1.0)
    assert time.monotonic() - started < 15, "probes must run in parallel and respect the timeout"
    assert [(s.name, s.up) for s in built.services] == [(name, False) for name in names.ALL_SERVICES]
    probed = [s for s in built.services if s.name != names.STREAM]
    assert all(s.detail == "connection refused" for s in probed), [s.detail for s in probed]
    assert built.core_down() == list(names.CORE_SERVICES)
    assert built.dead_letters.error == "kafka down: connection refused"
    assert (built.schemas.error, built.cassandra.error) == ("connection refused", "connection refused")
    assert built.dag_runs.error == "connection refused"
    assert built.lag.error == built.topics[0].error == "kafka down: connection refused"
    assert built.stream.error == "the streaming job has not run with this checkpoint yet (`make stream` starts it)"


def test_stack_status_is_the_status_views_services_table(tmp_path):
    """`python -m stack status` prints ops.status's services table: one name per service, the launcher's."""
    port = closed_port()
    env = {**os.environ, "STACK_HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{port}", "CASSANDRA_PORT": str(port),
           "DATASOURCE_URL": f"http://127.0.0.1:{port}/api/", "AIRFLOW_URL": f"http://127.0.0.1:{port}",
           "MONITOR_URL": f"http://127.0.0.1:{port}", "SPARK_CHECKPOINT_DIR": str(tmp_path / "cp")}
    result = subprocess.run([sys.executable, "-m", "stack", "status"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    rows = {cells[0]: cells[1] for cells in lines if cells and cells[0] in names.ALL_SERVICES}
    assert rows == {"kafka": "DOWN", "registry": "DOWN", "cassandra": "DOWN", "datasource": "DOWN",
                    "airflow": "down", "stream": "down", "monitor": "down"}
