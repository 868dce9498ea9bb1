"""The job SIGKILLed three times under load: the supervisor restarts it, the checkpoint replays, nothing is lost or doubled.

The three kills hit what an OOM killer or a lost container can take: the
driver with its JVM, the JVM alone (the Python driver sees its gateway
vanish), and the Python driver alone (the JVM follows once its stdin closes).
Each kill comes after the running job has finished a batch with new
records, so it lands mid-stream with records still arriving. The load
stops once the job, restarted a third time, has written a batch of new
records: the kills, not a fixed load length, set how long the case takes.
"""

from __future__ import annotations

import time

import psutil
import pytest

from tests.faults.lane import JOB_START_SECONDS, LOAD_SECONDS
from tests.spark.harness import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.spark]

USERS = 2400
RATE = 12  # users per second: the load could last over three minutes, and stops after the third restart


def records_in(job) -> int:
    """Records the job has finished so far, per its progress file (a replayed batch counts once)."""
    return (((job.progress() or {}).get("totals") or {}).get("records_in")) or 0


def new_records_written(job, when: str) -> None:
    """Wait for the running job to finish a batch with records it had not finished before."""
    before = records_in(job)
    wait_until(lambda: records_in(job) > before, JOB_START_SECONDS, f"a batch with new records in {when}\n{job.describe()}",
               interval=0.5)


def kill(processes: list[psutil.Process | None]) -> None:
    """SIGKILL these processes at once (psutil checks each pid is still the process it was)."""
    found = [process for process in processes if process is not None]
    assert found, "no job process to kill"
    for process in found:
        process.kill()


def test_the_job_sigkilled_three_times_under_load(lane, case):
    case.case = "job SIGKILLed 3x under load (driver+JVM, JVM, driver)"
    lane = lane("kills")
    users, load = lane.users_under_load(case, USERS, RATE)
    job = lane.job

    targets = {
        "driver and JVM": lambda: [job.jvm(), job.driver()],
        "JVM only": lambda: [job.jvm()],
        "driver only": lambda: [job.driver()],
    }
    for restarts, (what, processes) in enumerate(targets.items()):
        new_records_written(job, f"run {restarts + 1} before killing the {what}")
        kill(processes())
        last_kill, at_last_kill = time.monotonic(), lane.watermarks()
        wait_until(lambda: job.restarts() == restarts + 1, 120, f"the supervisor to restart the job after killing the {what}\n{job.describe()}")
        job.wait_query_started(restarts + 2, JOB_START_SECONDS)
    new_records_written(job, "the run after the third kill")
    load.stop()

    case.catch_up_seconds = lane.catch_up(last_kill, at_last_kill)
    load.join(LOAD_SECONDS)
    users = users[:load.sent]
    case.users_produced = len(users)
    lane.settle(case, users, restarts=3)
    # Each batch a kill cut short ran again under its own id: counted once in the totals `make status` shows.
    assert records_in(job) == len(users), job.progress()
