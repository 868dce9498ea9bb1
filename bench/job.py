"""The real streaming job as a benchmark's subprocess: `python -m spark.stream_job` on a corner's names.

The job runs exactly as `make stream` runs it (its own process, its own
SparkSession, the settings from the environment), so a load run measures
the product, not a test double. Spark settings the job does not expose
(e.g. the Cassandra connector's `spark.cassandra.output.*`) can be tried
with `extra_conf`: they reach the JVM through PYSPARK_SUBMIT_ARGS, which
pyspark reads when it launches the gateway; nothing in spark/ changes.

Use:
    with StreamJob(corner.job_env(), log_path, args=["--trigger", "5 seconds"]) as job:
        job.wait_started(timeout=240)
        job.tree()          # psutil processes: the driver, its JVM, Python workers
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from core.settings import REPO_ROOT

STARTED_MARKER = "started: topic"  # spark.stream_job logs "query <name> started: topic ..." once the query runs


class JobError(RuntimeError):
    """The job did not start or died; the message quotes the end of its log."""


def submit_args(extra_conf: dict[str, str]) -> str:
    """PYSPARK_SUBMIT_ARGS carrying extra Spark settings (pyspark needs the trailing `pyspark-shell`)."""
    confs = " ".join(f"--conf {key}={value}" for key, value in extra_conf.items())
    return f"{confs} pyspark-shell".strip()


class StreamJob:
    """Starts the job on enter, stops it (SIGINT, then harder, by pid) on exit."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str] | None = None,
                 extra_conf: dict[str, str] | None = None):
        self.env = {**os.environ, **env}
        if extra_conf:
            self.env["PYSPARK_SUBMIT_ARGS"] = submit_args(extra_conf)
        self.log_path = log_path
        self.args = args or []
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> StreamJob:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "spark.stream_job", *self.args], cwd=REPO_ROOT,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the job's last log lines if it has exited."""
        code = self.process.poll()
        if code is not None:
            raise JobError(f"the stream job exited with status {code}; its log ({self.log_path}) ends:\n{self.log_tail()}")

    def wait_started(self, timeout: float) -> None:
        """Until the job logs that its query is running (session built, schema and table checked)."""
        deadline = time.monotonic() + timeout
        while STARTED_MARKER not in self.log_path.read_text(encoding="utf-8", errors="replace"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise JobError(f"the stream job did not start its query within {timeout:.0f} s; log:\n{self.log_tail()}")
            time.sleep(0.5)

    def wait_exit(self, timeout: float) -> int:
        """The exit status of a job that ends by itself (--available-now); raise if it runs past `timeout`."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise JobError(f"the stream job still runs after {timeout:.0f} s; log:\n{self.log_tail()}") from None

    def tree(self) -> list[psutil.Process]:
        """The driver and every descendant (spark-submit's JVM, pyspark daemon and workers)."""
        try:
            driver = psutil.Process(self.process.pid)
            return [driver, *driver.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGINT (the job stops its query), then SIGTERM, then SIGKILL; leftover children are ended by pid."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        family = self.tree()
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            self.process.send_signal(sig)
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        for child in family[1:]:
            if child.is_running():
                child.terminate()
        psutil.wait_procs([c for c in family[1:] if c.is_running()], timeout=20)
        return self.process.returncode
