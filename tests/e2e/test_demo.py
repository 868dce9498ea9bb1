"""End to end: the README's main command, then row-level equality with what the data source served.

Runs `python -m ops.demo` as a user would (Airflow standalone, the REST
trigger path, the Spark streaming job), with a seed of its own, then fetches
the same seed and pages from the data source, maps them with the producer's
transform and compares every field of every user with the Cassandra row.
While the demo runs, `ops.status` snapshots must show the users arriving
on the topic and the job's lag or progress; after it, the job caught up; once
the job is stopped, it must show it as down. Airflow and the job are stopped
again if this test started them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import pytest

from core.settings import REPO_ROOT, load_settings
from stack import launcher
from stack.layout import Layout
from tests.e2e.demo_run import assert_rows_match, served_users

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.airflow, pytest.mark.spark]

USERS = 1200
BATCH = 500
RUNNING_BEFORE: set[str] = set()  # what ran before the demo: what the tests must leave running


@pytest.fixture(scope="module")
def demo():
    """Run the main command once, taking `make status` snapshots while it runs; stop what it started afterwards."""
    settings = load_settings()
    layout = Layout(settings.stack_home)
    running_before = {name for name in ("airflow", "stream") if launcher.read_pid(layout, name)}
    RUNNING_BEFORE.update(running_before)
    seed = f"e2e-{uuid.uuid4().hex[:8]}"
    started = datetime.now(timezone.utc)
    before = status_report()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.demo", "--users", str(USERS), "--batch-size", str(BATCH), "--seed", seed],
            cwd=REPO_ROOT, stdout=out, stderr=err, text=True,
        )
        snapshots = []  # status reports finished while the demo was still running
        deadline = time.monotonic() + 1500
        while process.poll() is None and time.monotonic() < deadline:
            report = status_report(timeout=10)
            if process.poll() is None:
                snapshots.append(report)
            time.sleep(3)
        if process.poll() is None:
            process.kill()
        process.wait()
        out.seek(0), err.seek(0)
        result = subprocess.CompletedProcess(process.args, process.returncode, out.read(), err.read())
    yield result, seed, started, layout, before, snapshots
    launcher.down(settings, layout, [name for name in ("stream", "airflow") if name not in running_before])


def records_in(report: dict) -> int:
    """Records the streaming job has counted so far, per its progress file (0 before its first batch)."""
    return (((report.get("stream") or {}).get("progress") or {}).get("totals") or {}).get("records_in", 0)


def test_demo_succeeds_and_reports_its_counts(demo):
    result, *_ = demo
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert f"users fetched        {USERS}" in result.stdout
    assert f"users published      {USERS}" in result.stdout
    assert "dead-lettered        0" in result.stdout
    assert f"rows in Cassandra    {USERS} from this run" in result.stdout


def test_cassandra_holds_exactly_what_the_source_served(demo, settings):
    result, seed, started, *_ = demo
    assert result.returncode == 0, result.stderr[-2000:]
    expected = served_users(settings.datasource_url, seed, USERS, BATCH)
    assert len(expected) == USERS
    assert_rows_match(settings, expected, started)


def status_report(timeout: float = 30) -> dict:
    """`make status --json`, with probe timeouts for a loaded CI machine rather than a terminal's 3 s."""
    result = subprocess.run([sys.executable, "-m", "ops.status", "--json", "--timeout", str(timeout)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.stdout, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_status_shows_the_stream_progressing_while_the_demo_runs(demo):
    result, _, _, _, before, snapshots = demo
    assert result.returncode == 0, result.stderr[-2000:]
    assert snapshots, "no status report finished while the demo ran"
    seen = [(published(r), (r.get("lag") or {}).get("total"), records_in(r)) for r in snapshots]
    # The producer's progress: the demo's users on the topic, counted from its end offsets.
    assert any(p >= published(before) + USERS for p, _, _ in seen), f"(published, lag, records in): {seen}"
    # The job's, each fact on its own: while the demo waited, the records waited for the job (the group's lag;
    # the job may take all of them in one batch, so its count can jump only after the demo is done) ...
    assert any((lag or 0) > 0 for _, lag, _ in seen), f"no lag ever shown; (published, lag, records in): {seen}"
    # ... and then the job counted every one of them, its count never going back, its lag back to 0.
    after = caught_up_report()
    counted = [n for _, _, n in seen] + [records_in(after)]
    assert records_in(after) >= records_in(before) + USERS, f"the job did not count this run: {seen} then {records_in(after)}"
    assert counted == sorted(counted), f"the job's count went backwards: {counted}"
    assert after["lag"]["total"] == 0, json.dumps(after["lag"])
    old_runs = set(run_ids(before))
    assert any(set(run_ids(report)) - old_runs for report in snapshots), "status never listed the demo's DAG run"


def caught_up_report(seconds: float = 90) -> dict:
    """The demo returns once the rows are in Cassandra; the job records its progress and commits its offsets
    just after. Give that a moment rather than racing it."""
    deadline = time.monotonic() + seconds
    while True:
        report = status_report()
        totals = ((report["stream"].get("progress") or {}).get("totals") or {})
        if (report["lag"]["total"] == 0 and totals.get("rows_written", 0) >= USERS) or time.monotonic() > deadline:
            return report
        time.sleep(2)


def published(report: dict) -> int:
    return sum(sum((t.get("latest") or {}).values()) for t in report.get("topics") or [] if t["topic"] == load_settings().users_topic)


def run_ids(report: dict) -> list[str]:
    return [run["run_id"] for run in (report.get("dag_runs") or {}).get("runs") or []]


def test_status_shows_progress_while_running_and_the_job_down_once_stopped(demo, settings):
    result, _, _, layout, *_ = demo
    running_before = RUNNING_BEFORE
    assert result.returncode == 0, result.stderr[-2000:]

    report = caught_up_report()
    text = json.dumps(report)
    assert report["cassandra"]["rows"] >= USERS, text[:2000]
    assert report["stream"]["progress"]["batch_id"] is not None, text[:2000]
    assert report["stream"]["progress"]["totals"]["rows_written"] >= USERS, text[:2000]
    assert report["lag"]["total"] == 0, text[:2000]
    services = {service["name"]: service for service in report["services"]}
    assert services["stream"]["up"], text[:2000]
    # Every service says which version runs: asked of the service, or the launcher's for Kafka and the job.
    from importlib.metadata import version

    assert services["airflow"]["version"] == version("apache-airflow"), services["airflow"]
    assert services["stream"]["version"] == f"spark {version('pyspark')}", services["stream"]
    assert services["kafka"]["version"].startswith("4."), services["kafka"]
    assert services["cassandra"]["version"].startswith("5.0"), services["cassandra"]
    assert services["registry"]["version"].startswith("3."), services["registry"]

    launcher.down(settings, layout, ["stream"])
    try:
        report = status_report()
        services = {service["name"]: service for service in report["services"]}
        assert not services["stream"]["up"], json.dumps(report["services"])
    finally:
        if "stream" in running_before:  # the shared stack's job: others rely on it
            launcher.up(settings, layout, ["stream"])


def run_demo(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops.demo", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **env})


def test_a_failing_step_names_its_component_and_exits_non_zero(demo):
    """A keyspace that exists with other replication is refused by the schema step, not silently kept."""
    failed = run_demo("--users", "10", CASSANDRA_REPLICATION="NetworkTopologyStrategy:dc9=2")
    assert failed.returncode == 1, failed.stdout[-2000:]
    assert "demo: FAILED: cassandra:" in failed.stderr


def test_a_run_airflow_refuses_is_an_error_naming_airflow(demo):
    """Params are validated at trigger time: a bad nationality list never becomes a green run."""
    failed = run_demo("--users", "10", "--nationalities", "not a list!")
    assert failed.returncode == 1, failed.stdout[-2000:]
    assert "demo: FAILED: Airflow answered 400" in failed.stderr, failed.stderr[-2000:]
