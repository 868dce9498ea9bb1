"""Is the streaming job still working for the demo, and if not, why, in one line.

The job writes its state into a small JSON file (core.job_state): `running`,
`waiting` for a service, or `failed` with the error, batch and offsets and a
hint. The demo reads it while it waits for rows, so a stopped job is reported
as that one line instead of "0/1000 rows" and a pointer to a Java stack trace.

A state file written before the launcher's latest start of the job (the
`===== <time> starting:` marker in `.stack/logs/stream.log`) belongs to an
earlier run and is ignored: leftovers do not decide a new run. When there is
no fresh state (the job died before writing one, or was killed), the reason
is the last exception line the job logged since that marker.

With a supervisor that restarts the job after a crash, a `failed` state is
final only once the job's process is gone or the supervisor says it is
crash-looping; until then the demo shows the line and keeps waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core.job_state import FAILED, RUNNING, WAITING, job_state_path, one_line, read_job_state
from core.settings import Settings
from stack.layout import Layout
from stack.services import START_MARKER

MARKER_TIME = re.compile(re.escape(START_MARKER) + r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) starting:")
# An exception line of either runtime: Python's last traceback line (`pyspark.errors....Exception: msg`,
# `ValueError: msg`), a JVM `org.x.FooException: msg` or `Caused by: ...`, and the job's own one-line
# reason (`spark.stream_job: ...`). Stack frames (`\tat ...`, `  File ...`) never match.
EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?(?:[\w$]+\.)*[A-Z][\w$]*(?:Error|Exception|Exit|Failure)\b:?.*$")
JOB_REASON = re.compile(r"^spark\.stream_job: (.+)$")
RESTART_NOTE = " (waiting for the job to be restarted)"
CRASH_LOOP = re.compile(r"crash[- ]?loop|giving up|gave up", re.IGNORECASE)


@dataclass(frozen=True)
class JobReport:
    """What the demo needs to know about the job right now."""

    state: str  # running, waiting, failed (restart expected), stopped (final)
    line: str  # one line a person can act on
    failure: tuple[str, str, str] | None = None  # (error class, message, since) of a `failed` state

    @property
    def stopped(self) -> bool:
        return self.state == "stopped"


def job_report(settings: Settings, layout: Layout, pid: int | None) -> JobReport:
    """The job's state as the demo reports it; `pid` is the launcher's process for the job (None: not running)."""
    log = layout.log("stream")
    started = last_start(log)
    record = fresh_state(settings, started)
    if pid is None:
        if record is not None and record.get("state") == FAILED:
            return JobReport("stopped", one_line(record))
        reason = last_exception(log) or "it logged no error (was it stopped or killed?)"
        return JobReport("stopped", f"the job is not running: {reason}. Restart it with `make stream`; log {log}")
    if record is None or record.get("state") == RUNNING:
        return JobReport(RUNNING, one_line(record) if record else "running")
    if record.get("state") == WAITING:
        return JobReport(WAITING, one_line(record))
    error = record.get("error") or {}
    if record.get("state") == FAILED and (error.get("final") or CRASH_LOOP.search(f"{error.get('message', '')} {error.get('hint', '')}")):
        return JobReport("stopped", one_line(record))
    # Numbers masked: the same fault names another partition or offset on each run.
    failure = (str(error.get("class")), re.sub(r"\d+", "N", str(error.get("message"))), str(record.get("since")))
    return JobReport(FAILED, one_line(record) + RESTART_NOTE, failure)


@dataclass
class RepeatedFailures:
    """The same error after a restart: the restart did not help, so the person at the terminal should know now.

    The supervisor stops a crash loop when the same *batch* fails again and
    again; a failure outside a batch (the Kafka source refusing offsets that
    went backwards, say) has no batch, and would be restarted until the demo's
    deadline. Two failures with the same error class and message (numbers
    aside: another partition or offset each time), written by two runs (a restart in between, whatever it did), are enough for the demo
    to stop waiting.
    """

    limit: int = 2
    runs: list[tuple[str, str, str]] = field(default_factory=list)

    def crash_loop(self, report: JobReport) -> bool:
        if report.failure is None or report.failure in self.runs:
            return False
        if self.runs and self.runs[-1][:2] != report.failure[:2]:
            self.runs.clear()
        self.runs.append(report.failure)
        return len(self.runs) >= self.limit


def fresh_state(settings: Settings, started: datetime | None) -> dict | None:
    """The job's state file, unless it was written before the launcher's latest start of the job."""
    try:
        record = read_job_state(job_state_path(settings.spark_checkpoint_dir))
    except (OSError, ValueError):  # unreadable or not JSON: no usable state; the log is the fallback
        return None
    if record is None or started is None:
        return record
    since = parse_time(record.get("since"))
    # The marker has whole seconds; the state file milliseconds.
    return record if since is not None and since >= started - timedelta(seconds=1) else None


def parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def last_start(log: Path) -> datetime | None:
    """When the launcher last started the job, from its marker line (local time, as the launcher wrote it)."""
    matches = MARKER_TIME.findall(read_text(log))
    if not matches:
        return None
    return datetime.strptime(matches[-1], "%Y-%m-%d %H:%M:%S").astimezone(timezone.utc)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def last_exception(log: Path, limit: int = 400) -> str | None:
    """The job's reason for stopping, from its log since the launcher's latest start marker.

    Hand-written, because no library parses a log that interleaves Python
    tracebacks with JVM stack traces. The job's own `spark.stream_job:` line
    wins (it was written to be read); otherwise the last exception line, which
    is the root cause in a JVM `Caused by:` chain and the raised error in a
    Python traceback.
    """
    this_start = read_text(log).rsplit(START_MARKER, 1)[-1]
    lines = [line.strip() for line in this_start.splitlines()]
    own = [match.group(1) for line in lines if (match := JOB_REASON.match(line))]
    found = own[-1] if own else next((line for line in reversed(lines) if EXCEPTION_LINE.match(line)), None)
    if found is None:
        return None
    found = found.removeprefix("Caused by: ")
    return found if len(found) <= limit else found[: limit - 1] + "…"
