"""The job state file: what the demo, the status view and the supervisor read of a running or stopped job."""

from __future__ import annotations

import os

from core.job_state import FAILED, RUNNING, WAITING, job_state_path, one_line, read_job_state, write_job_state


def test_state_round_trips_next_to_the_checkpoint(tmp_path):
    path = job_state_path(str(tmp_path / "checkpoints" / "users"))
    assert path == (tmp_path / "checkpoints" / "users.state.json").resolve()
    assert read_job_state(path) is None
    written = write_job_state(path, WAITING, service="cassandra", detail="NoHostAvailable")
    assert read_job_state(path) == written
    assert written["pid"] == os.getpid() and written["state"] == WAITING
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], "the temp file is renamed away"


def test_waiting_names_the_service_and_since_when():
    line = one_line({"state": WAITING, "service": "registry", "since": "2026-01-01T00:00:00.000Z", "detail": "refused"})
    assert line == "waiting for registry since 2026-01-01T00:00:00.000Z: refused"


def test_failed_says_batch_offsets_error_and_what_to_do_once():
    record = {"state": FAILED, "error": {
        "class": "IllegalStateException", "message": "IllegalStateException: offset changed",
        "batch_id": 7, "offsets": {"users": {"0": 12}}, "hint": "run `make clean`"}}
    assert one_line(record) == (
        'stopped in batch 7 at offsets {"users": {"0": 12}} with IllegalStateException: offset changed. run `make clean`'
    )
    plain = {"state": FAILED, "error": {"class": "SparkUpgradeException", "message": "ancient date"}}
    assert one_line(plain) == "stopped with SparkUpgradeException: ancient date"


def test_running_is_a_short_line():
    assert one_line({"state": RUNNING, "since": "t"}) == "running since t"
