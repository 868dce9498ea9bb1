"""How the demo waits: a slow or refused answer means "not yet"; only a step's deadline fails.

On a busy machine a service can take longer than one request's timeout to
answer (Airflow's api-server, Cassandra under compaction). One slow answer
must not end the main command, so every wait goes through one policy, built
on tenacity:

- `NotYet` (the thing awaited has not happened: the DAG is not parsed, the
  run is still running, 742/1000 rows) is polled again every few seconds;
- a *transient* failure (a timeout, a refused connection, a 5xx; the caller
  says which exceptions are transient) is retried with backoff, and
  `SlowNotice` prints "<component> slow to answer, retrying…" once per
  stretch of failures, not once per poll;
- anything else is final at once (a 4xx, a run that failed);
- when the step's `Deadline` passes, `WaitTimeout` names the component, what
  it was waiting for, the last answer and the log to read.

The Airflow client (ops.airflow_api) and the demo's own polls
(ops.demo) use the same `call_until`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

T = TypeVar("T")
POLL_SECONDS = 2.0  # between two polls of something that is not done yet
MAX_BACKOFF_SECONDS = 8.0  # longest pause after a transient failure


class NotYet(Exception):
    """What a poll raises while the awaited thing has not happened; the message says how far it got."""


class WaitTimeout(RuntimeError):
    """A step's deadline passed; the message names the component, the last answer and its log."""


@dataclass
class Deadline:
    """One step's time budget, shared by every call made for that step."""

    seconds: float
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at


@dataclass
class SlowNotice:
    """Says once per stretch of failures that a component is slow, and when it answers again."""

    component: str
    say: Callable[[str], None] = lambda line: print(line, flush=True)
    since: float | None = None

    def failed(self, error: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.say(f"    {self.component} slow to answer, retrying… ({getattr(error, 'reason', None) or short(error)})")

    def answered(self) -> None:
        if self.since is not None:
            self.say(f"    {self.component} answered again after {time.monotonic() - self.since:.0f}s")
            self.since = None


def short(error: BaseException, limit: int = 160) -> str:
    """An exception as one short line (driver errors can carry a whole dict of hosts)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_until(
    call: Callable[[], T],
    deadline: Deadline | None,
    *,
    transient: Callable[[BaseException], bool],
    notice: SlowNotice | None,
    on_timeout: Callable[[BaseException], Exception],
    poll_seconds: float = POLL_SECONDS,
) -> T:
    """`call()` until it returns, retrying `NotYet` and transient failures until `deadline`.

    Without a deadline the call is tried once (what a one-shot probe such as
    `make status` wants). At the deadline, `on_timeout(last_error)` is raised.
    """
    if deadline is None:
        deadline = Deadline(0)

    def retryable(error: BaseException) -> bool:
        return isinstance(error, NotYet) or transient(error)

    backoff = wait_exponential(multiplier=0.5, min=0.5, max=MAX_BACKOFF_SECONDS)

    def pause(state: RetryCallState) -> float:
        wanted = poll_seconds if isinstance(state.outcome.exception(), NotYet) else backoff(state)
        return min(wanted, deadline.remaining())

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception()
        if notice is not None:
            notice.answered() if isinstance(error, NotYet) else notice.failed(error)

    def give_up(state: RetryCallState) -> T:
        error = state.outcome.exception()
        raise on_timeout(error) from error

    result = Retrying(
        retry=retry_if_exception(retryable),
        stop=lambda state: deadline.passed(),
        wait=pause,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )(call)
    if notice is not None:
        notice.answered()
    return result
