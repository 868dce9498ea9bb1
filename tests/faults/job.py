"""The streaming job as the embedded stack runs it: `python -m stack.supervisor -- python -m spark.stream_job`.

One per fault case, with the case's topic, keyspace and checkpoint in its
environment, in its own process group and with its own log. The helpers find
the processes a fault is injected into (the job's Python driver and its JVM,
children of the supervisor) and read what the job and the supervisor say
about themselves (state file, progress file, log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from core.job_state import job_state_path, one_line, read_job_state
from core.settings import REPO_ROOT
from spark.progress import progress_path, read_progress
from stack.services import START_MARKER
from tests.spark.harness import wait_until

QUERY_STARTED = " started: topic "  # the job's log line once its query runs (the launcher's readiness probe reads it too)
RESTARTED = "supervisor: the job crashed"  # the supervisor's line before each restart


class SupervisedJob:
    """The supervisor and the job under it, started with `env`, logging to `log`."""

    def __init__(self, env: dict[str, str], log: Path, checkpoint: str):
        self.env = env
        self.log = log
        self.checkpoint = checkpoint
        self.supervisor: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "stack.supervisor", "--backoff", "1", "--max-backoff", "4",
                   "--", sys.executable, "-m", "spark.stream_job"]
        with self.log.open("ab") as out:
            self.supervisor = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **self.env}, stdout=out,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def describe(self) -> str:
        """What a failed assertion should show: the job's state in one line, why each run crashed, its log's tail."""
        state = self.state()
        return (f"job state: {one_line(state) if state else 'none written'}\n{self.crashes()}"
                f"--- {self.log} ---\n{self.tail()}")

    def crashes(self, before: int = 25) -> str:
        """The last lines of each run that crashed, up to the supervisor's restart line (the tail shows only the last run)."""
        lines, shown = self.text().splitlines(), []
        for index, line in enumerate(lines):
            if RESTARTED in line:
                kept = [text for text in lines[max(0, index - before):index + 1] if not text.lstrip().startswith("at ")]
                shown.append(f"--- crash {len(shown) + 1}: the log before the supervisor's restart ---\n" + "\n".join(kept))
        return "".join(part + "\n" for part in shown)

    def wait_query_started(self, runs: int, timeout: float) -> None:
        """Until the `runs`-th start of the job (counting the supervisor's restarts) has its query running."""
        def started() -> bool:
            assert self.supervisor.poll() is None, f"the supervisor exited {self.supervisor.returncode}\n{self.describe()}"
            return self.text().count(QUERY_STARTED) >= runs and QUERY_STARTED in self.text().rsplit(START_MARKER, 1)[-1]
        wait_until(started, timeout, f"start {runs} of the job to run its query\n{self.describe()}", interval=1)

    def restarts(self) -> int:
        return self.text().count(RESTARTED)

    def driver(self) -> psutil.Process | None:
        """The job's Python process (the supervisor's child), if one runs now."""
        try:
            children = psutil.Process(self.supervisor.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0] if children else None

    def jvm(self) -> psutil.Process | None:
        """The driver's JVM (pyspark starts it as a child of the Python process)."""
        driver = self.driver()
        try:
            return next((p for p in driver.children(recursive=True) if p.name() == "java"), None) if driver else None
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        """The supervisor and a job under it are running, and the job does not say it failed."""
        return (self.supervisor is not None and self.supervisor.poll() is None and self.driver() is not None
                and (self.state() or {}).get("state") != "failed")

    def state(self) -> dict[str, Any] | None:
        try:
            return read_job_state(job_state_path(self.checkpoint))
        except ValueError:  # not JSON: the atomic rename makes this impossible unless something else wrote it
            return None

    def progress(self) -> dict[str, Any] | None:
        return read_progress(progress_path(self.checkpoint))

    def watch_states(self) -> set[tuple[str, str | None]]:
        """From now until the job stops: every (state, service) its state file shows, sampled twice a second.

        A service outage should show as ("waiting", "<service>") while it lasts.
        """
        seen: set[tuple[str, str | None]] = set()

        def sample() -> None:
            while self.supervisor.poll() is None:
                record = self.state() or {}
                seen.add((record.get("state"), record.get("service")))
                time.sleep(0.5)

        threading.Thread(target=sample, name="job-state-watch", daemon=True).start()
        return seen

    def stop(self) -> None:
        """SIGTERM to the group (what `python -m stack down` does), SIGKILL if it is still there after 60 s."""
        if self.supervisor is None or self.supervisor.poll() is not None:
            return
        os.killpg(self.supervisor.pid, signal.SIGTERM)
        try:
            self.supervisor.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.supervisor.pid, signal.SIGKILL)
            self.supervisor.wait(30)
