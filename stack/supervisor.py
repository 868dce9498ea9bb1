"""Keep the streaming job running on the embedded stack: restart it after a crash, stop on a crash loop.

Why: a Structured Streaming job that dies (an OOM kill, a lost JVM, a batch
that failed after its retries) loses nothing, since its checkpoint replays the
uncommitted batch, but it also does nothing until someone starts it again.
Docker Compose restarts the job's container (`restart:` in docker-compose.yml);
on the embedded stack (`make up --all`, `make stream`, `make demo`) the
launcher runs the job under this supervisor, which does the same:

- The job is a child in the supervisor's process group (the launcher gives
  each service its own), so `python -m stack down`, which sends SIGTERM to the
  group, reaches both. On SIGTERM or SIGINT the supervisor passes the signal
  on, waits for the job and exits 0 without restarting it; a job that itself
  died of SIGTERM/SIGINT was stopped on purpose and is not restarted either.
- A crash (a non-zero exit, or death by any other signal, SIGKILL included)
  is restarted after a backoff: 2 s, 4 s, 8 s ... up to 60 s, back to 2 s
  once a run lasted two minutes.
- A crash loop is not retried forever. When the job's state file
  (core/job_state.py) says `failed` in the same batch at the same offsets N
  times in a row, replaying that batch will not help: the supervisor writes a
  final `failed` state naming the batch and what to do, says the same in the
  log, and exits 1.
- A job that fails at its very first start, before it ever reported
  `running` or a batch, is not restarted: the launcher's `up` then reports
  the job's own reason at once instead of waiting for a readiness that cannot
  come.

Each restart writes the launcher's start marker (`===== <time> starting:`)
into the log, so the launcher's readiness probe and the demo's job watch
(ops/job_watch.py) look at the current run only; the supervisor's own lines
start with "supervisor:".

Usage:
    python -m stack.supervisor [--crash-loop-limit 3] [--backoff 2] [--max-backoff 60] \\
        [--checkpoint DIR] [-- python -m spark.stream_job [JOB ARGS]]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from core.job_state import FAILED, RUNNING, job_state_path, one_line, read_job_state, write_job_state
from core.settings import load_settings
from spark.progress import progress_path
from stack.services import START_MARKER

CRASH_LOOP_LIMIT = 3  # the same batch failing this many times in a row is a crash loop
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 60.0
HEALTHY_RUN = 120.0  # a run at least this long resets the backoff
STOP_TIMEOUT = 40.0  # after passing on SIGTERM; the launcher SIGKILLs the group after 45 s anyway
POLL = 1.0  # seconds between looks at the child and its state file
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Exit statuses of a job that was asked to stop: killed by SIGTERM/SIGINT, or exited 128+N after handling one.
STOPPED_ON_PURPOSE = {-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGINT}


@dataclass(frozen=True)
class Run:
    """How one run of the job ended."""

    code: int  # Popen's returncode: negative for death by a signal
    seconds: float
    reported_running: bool  # it wrote `running` or a batch's progress since it started
    failure: dict[str, Any] | None  # its own `failed` state record, if it wrote one before exiting

    @property
    def batch(self) -> tuple[Any, str] | None:
        return failed_batch(self.failure)


def failed_batch(record: dict[str, Any] | None) -> tuple[Any, str] | None:
    """(batch_id, offsets) of a `failed` record's batch: the same pair again and again is a crash loop."""
    error = (record or {}).get("error") or {}
    if (record or {}).get("state") != FAILED or error.get("batch_id") is None:
        return None
    return error["batch_id"], json.dumps(error.get("offsets"), sort_keys=True)


def describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def written_since(path: Path, started: float) -> bool:
    try:
        return path.stat().st_mtime >= started
    except OSError:
        return False


def fresh_record(state_file: Path, started: float) -> dict[str, Any] | None:
    """The job's state record if this run wrote it (older ones belong to an earlier run)."""
    if not written_since(state_file, started):
        return None
    try:
        return read_job_state(state_file)
    except (OSError, ValueError):  # half-written by a job killed mid-rename cannot happen (atomic), garbage can
        return None


class Supervisor:
    """Runs `command` until it is stopped on purpose or crash-loops; see the module docstring."""

    def __init__(self, command: list[str], checkpoint: str, *, crash_loop_limit: int = CRASH_LOOP_LIMIT,
                 backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF, healthy_run: float = HEALTHY_RUN,
                 out: TextIO = sys.stdout):
        self.command = command
        self.state_file = job_state_path(checkpoint)
        self.progress_file = progress_path(checkpoint)
        self.crash_loop_limit = crash_loop_limit
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.healthy_run = healthy_run
        self.out = out
        self.stop_signal: int | None = None
        self.child: subprocess.Popen | None = None

    def say(self, message: str) -> None:
        print(f"supervisor: {message}", file=self.out, flush=True)

    def _on_signal(self, signum: int, frame: object) -> None:
        """Only note it: the main loop passes it on and stops (a handler doing more could interrupt it anywhere)."""
        self.stop_signal = signum

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        restarts = quick_crashes = 0
        same_batch: list[Run] = []
        while True:
            run = self._run_once()
            if self.stop_signal is not None or run.code in STOPPED_ON_PURPOSE:
                self.say(f"stopped ({describe_exit(run.code)}); not restarting the job")
                return 0
            if run.code == 0:
                self.say("the job exited 0 (it stopped on its own); not restarting it")
                return 0
            if restarts == 0 and not run.reported_running:
                self.say(f"the job failed at its first start ({describe_exit(run.code)}, reason above); "
                         "not restarting it: fix the cause, then `make stream`")
                return run.code if run.code > 0 else 1
            if run.batch is None:
                same_batch = []  # killed, or failed outside a batch: not the same batch again
            elif same_batch and same_batch[-1].batch == run.batch:
                same_batch.append(run)
            else:
                same_batch = [run]
            if len(same_batch) >= self.crash_loop_limit:
                return self._give_up(same_batch, restarts)
            quick_crashes = quick_crashes + 1 if run.seconds < self.healthy_run else 1
            # Hand-written: tenacity's wait_exponential counts attempts and cannot start over after a healthy run.
            delay = min(self.max_backoff, self.backoff * 2 ** (quick_crashes - 1))
            restarts += 1
            what = f"; its state: {one_line(run.failure)}" if run.failure else ""
            self.say(f"the job crashed after {run.seconds:.0f} s ({describe_exit(run.code)}){what}; restart {restarts} in {delay:.0f} s")
            if self._sleep(delay):
                self.say("stopped while waiting to restart the job")
                return 0

    def _run_once(self) -> Run:
        """Start the job, watch it until it exits, pass a stop signal on; how it ended."""
        print(f"\n{START_MARKER}{time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.command)}", file=self.out, flush=True)
        started_wall, started = time.time(), time.monotonic()
        self.child = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        reported_running = False
        passed_on = False
        while True:
            try:
                code = self.child.wait(timeout=POLL)
                break
            except subprocess.TimeoutExpired:
                pass
            reported_running = reported_running or self._reports_running(started_wall)
            if self.stop_signal is not None and not passed_on:
                self.child.send_signal(self.stop_signal)
                passed_on, stop_deadline = True, time.monotonic() + STOP_TIMEOUT
            if passed_on and time.monotonic() > stop_deadline:
                self.say(f"the job did not stop within {STOP_TIMEOUT:.0f} s of the signal; killing it")
                self.child.kill()
        last = fresh_record(self.state_file, started_wall)
        failure = last if (last or {}).get("state") == FAILED else None
        # A failed batch means it was running, even if it wrote `running` and failed between two looks.
        reported_running = reported_running or self._reports_running(started_wall) or failed_batch(failure) is not None
        return Run(code, time.monotonic() - started, reported_running, failure)

    def _reports_running(self, started_wall: float) -> bool:
        """This run has said `running` in its state file, or recorded a batch's progress."""
        record = fresh_record(self.state_file, started_wall)
        return (record or {}).get("state") == RUNNING or written_since(self.progress_file, started_wall)

    def _sleep(self, seconds: float) -> bool:
        """Sleep, but wake within POLL of a stop signal; True if one came."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.stop_signal is None:
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        return self.stop_signal is not None

    def _give_up(self, runs: list[Run], restarts: int) -> int:
        """A crash loop: a final `failed` state and one clear log line, then exit 1."""
        error = dict((runs[-1].failure or {}).get("error") or {})
        batch_id, offsets = error.get("batch_id"), json.dumps(error.get("offsets"), sort_keys=True)
        hint = (f"crash loop: batch {batch_id} at offsets {offsets} failed {len(runs)} times in a row, so the supervisor "
                f"stopped restarting the job (after {restarts} restarts). Replaying it will not help: fix the cause "
                "in the job's log, then start the job again with `make stream`")
        error.update(final=True, hint=hint, crash_loop={"runs": len(runs), "restarts": restarts})
        write_job_state(self.state_file, FAILED, error=error)
        self.say(f"giving up: {one_line({'state': FAILED, 'error': error})}")
        return 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stack.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--crash-loop-limit", type=int, default=CRASH_LOOP_LIMIT, metavar="N",
                        help="stop after the same batch failed N times in a row (default %(default)s)")
    parser.add_argument("--backoff", type=float, default=FIRST_BACKOFF, metavar="S", help="first restart delay (default %(default)s s)")
    parser.add_argument("--max-backoff", type=float, default=MAX_BACKOFF, metavar="S", help="longest restart delay (default %(default)s s)")
    parser.add_argument("--healthy-run", type=float, default=HEALTHY_RUN, metavar="S",
                        help="a run this long resets the backoff (default %(default)s s)")
    parser.add_argument("--checkpoint", metavar="DIR", help="the job's checkpoint, whose state file is read (default: SPARK_CHECKPOINT_DIR)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the job's command (default: python -m spark.stream_job)")
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.crash_loop_limit < 1:
        parser.error("--crash-loop-limit must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = args.command or [sys.executable, "-m", "spark.stream_job"]
    supervisor = Supervisor(command, args.checkpoint or load_settings().spark_checkpoint_dir,
                            crash_loop_limit=args.crash_loop_limit, backoff=args.backoff,
                            max_backoff=args.max_backoff, healthy_run=args.healthy_run)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
