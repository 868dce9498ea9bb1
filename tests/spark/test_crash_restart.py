"""The job as users run it (`python -m spark.stream_job`), killed with SIGKILL mid-stream, then restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from core.settings import REPO_ROOT
from spark.progress import progress_path, read_progress
from tests.spark.harness import assert_rows_match, wait_until
from tests.spark.users import V1, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]

N = 400


def start_job(corner, log_path, *args: str) -> subprocess.Popen:
    """The CLI in its own process group, so the kill takes the JVM down with Python, like an OOM kill would."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "spark.stream_job", "--master", "local[2]", *args],
        cwd=REPO_ROOT, env={**os.environ, **corner.env()}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def tail(path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_sigkill_mid_stream_then_restart_converges_to_the_produced_set(corner_factory, tmp_path):
    corner = corner_factory("crash")
    run = corner.settings.users_topic
    corner.register(V1)
    users = [make_user(i, run) for i in range(N)]
    corner.produce_users(corner.serializer(V1), users)
    log_path = tmp_path / "job.log"
    progress_file = progress_path(corner.settings.spark_checkpoint_dir)

    job = start_job(corner, log_path, "--trigger", "1 second", "--max-offsets-per-trigger", "40")
    try:
        wait_until(
            lambda: job.poll() is not None or ((read_progress(progress_file) or {}).get("batch_id", -1) >= 2),
            180, "three batches of the first run",
        )
        assert job.poll() is None, f"the job exited early:\n{tail(log_path)}"
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # our own process group: python and its JVM
        job.wait(30)
    landed = corner.count()
    assert 0 < landed < N, f"the kill should land mid-stream, {landed} of {N} rows were written"

    rerun = start_job(corner, log_path, "--available-now")
    try:
        assert rerun.wait(240) == 0, f"restart failed:\n{tail(log_path)}"
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
    assert_rows_match(corner.rows(), users)
    assert corner.dead_letters(expected=0, timeout=3) == []
    # The batch cut by the kill ran again under its own id: counted once in the totals `make status` shows.
    progress = read_progress(progress_file)
    assert sum(progress["end_offsets"][run].values()) == N
    assert progress["totals"]["records_in"] == N, progress["totals"]
