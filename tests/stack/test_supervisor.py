"""The supervisor (stack/supervisor.py) around a scripted stand-in job (tests/stack/fake_job.py): real processes, real signals.

Restarts after a crash and a kill, a crash loop stopped with a final state,
different failing batches that are not a loop, a start-up failure that is
not retried, SIGTERM to the process group (what `python -m stack down` sends)
while the job runs and while a restart waits, and the launcher starting,
probing and stopping the supervised "stream" service.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core.job_state import FAILED, RUNNING, job_state_path, read_job_state
from core.settings import REPO_ROOT, Settings
from stack import launcher
from stack.layout import Layout
from stack.services import SERVICES, NotReady
from tests.spark.harness import wait_until

FAKE_JOB = str(Path(__file__).with_name("fake_job.py"))
FAST = ["--backoff", "0.2", "--max-backoff", "1"]


@dataclasses.dataclass
class Supervised:
    pid: int  # the supervisor's, which leads the process group
    log: Path
    checkpoint: Path
    process: subprocess.Popen | None = None  # when this test started it (not the launcher)

    @property
    def runs(self) -> int:
        counter = self.checkpoint.parent / "runs"
        return int(counter.read_text()) if counter.exists() else 0

    def state(self) -> dict | None:
        return read_job_state(job_state_path(str(self.checkpoint)))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def job_pids(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def group_alive(self) -> bool:
        """Any live (non-zombie) process left in the supervisor's group."""
        for process in psutil.process_iter(["status"]):
            try:
                if os.getpgid(process.pid) == self.pid and process.info["status"] != psutil.STATUS_ZOMBIE:
                    return True
            except ProcessLookupError:
                continue
        return False


@pytest.fixture
def supervise(tmp_path):
    """Start `python -m stack.supervisor ... -- fake_job PLAN` in its own process group, as the launcher does."""
    started: list[Supervised] = []

    def start(plan: str, *options: str) -> Supervised:
        checkpoint = tmp_path / "checkpoints" / "users"
        log = tmp_path / "stream.log"
        command = [sys.executable, "-m", "stack.supervisor", *FAST, *options, "--checkpoint", str(checkpoint),
                   "--", sys.executable, FAKE_JOB, str(checkpoint), plan]
        with log.open("ab") as out:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(Supervised(process.pid, log, checkpoint, process))
        return started[-1]

    yield start
    for item in started:
        if item.process.poll() is None:
            os.killpg(item.process.pid, signal.SIGKILL)
            item.process.wait(10)


def test_a_crashed_or_killed_job_is_restarted_and_sigterm_to_the_group_stops_both(supervise):
    job = supervise("crash,selfkill,run")
    wait_until(lambda: job.runs == 3 and (job.state() or {}).get("state") == RUNNING, 30, "the third run to be running")
    assert job.process.poll() is None, job.text()
    text = job.text()
    assert "crashed after" in text and "(exit code 1)" in text and "restart 1 in" in text, text
    assert "(signal SIGKILL)" in text and "restart 2 in" in text, text
    assert text.count("===== ") == 3, "each run starts after its own start marker"

    os.killpg(job.process.pid, signal.SIGTERM)  # what the launcher's stop sends
    assert job.process.wait(15) == 0, job.text()
    wait_until(lambda: not job.group_alive(), 15, "the job to be gone with its supervisor")
    assert job.runs == 3, "no restart after SIGTERM"  # the whole group is gone: nothing is left to start one
    assert "stopped (" in job.text() and "restart 3" not in job.text()


def test_the_same_batch_failing_again_and_again_stops_with_a_final_state(supervise):
    job = supervise("fail-batch", "--crash-loop-limit", "3")
    assert job.process.wait(30) == 1, job.text()
    assert job.runs == 3, "the job ran limit times, then the supervisor gave up"
    state = job.state()
    assert state["state"] == FAILED and state["error"]["final"] is True, state
    assert state["error"]["batch_id"] == 7 and state["error"]["offsets"] == {"t": {"0": 40}}, state
    assert "crash loop" in state["error"]["hint"] and "make stream" in state["error"]["hint"], state
    assert state["pid"] == job.process.pid
    last_line = job.text().strip().splitlines()[-1]
    assert last_line.startswith("supervisor: giving up: stopped in batch 7"), last_line
    assert "crash loop" in last_line


def test_different_batches_failing_are_not_a_crash_loop(supervise):
    job = supervise("fail-batch-7,fail-batch-8,fail-batch-9,run", "--crash-loop-limit", "2")
    wait_until(lambda: job.runs == 4 and (job.state() or {}).get("state") == RUNNING, 30, "the fourth run to be running")
    assert job.process.poll() is None, job.text()
    assert "restart 3 in" in job.text()


def test_a_kill_between_two_failures_of_a_batch_breaks_the_streak(supervise):
    job = supervise("fail-batch,selfkill,fail-batch,run", "--crash-loop-limit", "2")
    wait_until(lambda: job.runs == 4 and (job.state() or {}).get("state") == RUNNING, 30, "the fourth run to be running")
    assert job.process.poll() is None, job.text()


def test_a_failure_at_the_first_start_is_not_retried(supervise):
    job = supervise("fail-start")
    assert job.process.wait(20) == 1, job.text()
    assert job.runs == 1
    text = job.text()
    assert "cannot reach the Schema Registry (fake)" in text
    assert "failed at its first start" in text and "restart 1" not in text


def test_sigterm_while_a_restart_waits_stops_at_once(supervise):
    job = supervise("crash", "--backoff", "60", "--max-backoff", "60")
    wait_until(lambda: "restart 1 in 60 s" in job.text(), 20, "the first crash")
    os.killpg(job.process.pid, signal.SIGTERM)
    started = time.monotonic()
    assert job.process.wait(10) == 0
    assert time.monotonic() - started < 5, "the backoff was not cut short"
    assert job.runs == 1 and "stopped while waiting" in job.text()


def test_the_launcher_runs_the_stream_service_under_the_supervisor(tmp_path):
    """Start, readiness, a killed job restarted and probed again, then `down`: nothing left, nothing restarted."""
    settings = Settings(stack_home=tmp_path / "home")
    layout = Layout(settings.stack_home)
    layout.make_dirs()
    checkpoint = tmp_path / "checkpoints" / "users"
    real = SERVICES["stream"].command(settings, layout)
    assert real[:3] == [sys.executable, "-m", "stack.supervisor"] and real[-2:] == ["-m", "spark.stream_job"], real
    separator = real.index("--")
    command = [*real[:separator], *FAST, "--checkpoint", str(checkpoint), "--", sys.executable, FAKE_JOB, str(checkpoint), "run"]
    service = dataclasses.replace(SERVICES["stream"], command=lambda s, l: command, startup_timeout=30)
    try:
        assert launcher.start(settings, layout, service)
        job = Supervised(launcher.read_pid(layout, "stream"), layout.log("stream"), checkpoint)
        first = wait_until(job.job_pids, 10, "the job under the supervisor")[0]

        os.kill(first, signal.SIGKILL)
        # One listing per check: between two, the killed job can be reaped and the list empty.
        wait_until(lambda: (pids := job.job_pids()) and pids[0] != first, 20, "a new job process")
        wait_until(lambda: _ready(settings), 20, "the probe to see the restarted job's query")
        assert "restart 1 in" in job.text()
    finally:
        launcher.stop(settings, layout, service)
    assert launcher.read_pid(layout, "stream") is None
    assert not job.group_alive(), "a process of the group outlived `down`"
    assert "restart 2" not in job.text()


def _ready(settings: Settings) -> bool:
    try:
        SERVICES["stream"].probe(settings)
        return True
    except NotReady:  # until the restarted job logs its query as started
        return False
