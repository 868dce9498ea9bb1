"""Source stage: fetch users from a randomuser.me-compatible API, in replayable pages.

N users are fetched as pages 1..ceil(N/b) of `results=b` with a fixed seed, so
the same (seed, N, b, nat) always fetches the same users: a failed run can be
replayed and Cassandra's upsert by `login.uuid` makes the replay harmless.
The last page is fetched at full size and cut locally, so page p is the same
whatever N is.

Login secrets (password, salt, md5, sha1, sha256) are dropped from every
record as soon as a page is parsed (producer.redact): no later stage, dead
letter or log ever sees them.

Transient failures (HTTP 429 and 5xx, connection errors, read timeouts) are
retried by tenacity with exponential backoff, up to DATASOURCE_RETRIES times
per page, honouring `Retry-After` up to DATASOURCE_MAX_RETRY_AFTER_SECONDS
(a server asking for an hour does not get it). The whole fetch of one run
has a deadline (DATASOURCE_DEADLINE_SECONDS): no request or wait is started
that would end past it, so a rate-limit storm ends in a clear error naming the
setting instead of a task that hangs. What is not transient is not retried:
a 4xx other than 429, a `{"error": ...}` body, and a 200 whose body is not
JSON (a wrong DATASOURCE_URL pointing at a web page does not get better by
asking again). Every failure raises `DataSourceError` saying what to do; a
piece of a body shown in a message has its secrets redacted.

Use:
    from producer.source import make_session, fetch_batches
    session = make_session(retries=5, max_retry_after=60)
    for batch in fetch_batches(session, "http://localhost:8765/api/", users=1000, batch_size=500, seed="abc",
                               deadline_seconds=900):
        print(batch.page, len(batch.records), batch.source)
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
import tenacity
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from producer.redact import redact_text, without_secrets

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 5000  # randomuser.me's own limit for `results`
RETRY_STATUSES = (429, 500, 502, 503, 504)


class DataSourceError(RuntimeError):
    """The data source refused, failed after retries, or sent something that is not a user page."""


@dataclass(frozen=True)
class Batch:
    """One fetched page: the raw records plus where they came from (for dead-letter headers and replay)."""

    page: int
    seed: str
    records: list[Any]
    source: str  # the request URL: enough to fetch exactly these records again


class DataSourceSession(requests.Session):
    """A requests Session that also carries its retry policy (what `fetch_page` applies per request)."""

    def __init__(self, retries: int = 5, backoff_factor: float = 0.5, backoff_max: float = 30.0,
                 max_retry_after: float = 60.0) -> None:
        super().__init__()
        self.retries = retries
        self.backoff_factor = backoff_factor
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.headers["Accept"] = "application/json"


def make_session(retries: int = 5, backoff_factor: float = 0.5, backoff_max: float = 30.0,
                 max_retry_after: float = 60.0) -> DataSourceSession:
    """A Session that retries what is worth retrying (429, 5xx, connection errors, timeouts), and nothing else.

    Backoff is exponential (`backoff_factor` * 2^n, at most `backoff_max` s); a
    server's `Retry-After` wins, capped at `max_retry_after` s.
    """
    return DataSourceSession(retries, backoff_factor, backoff_max, max_retry_after)


class _Transient(Exception):
    """Internal: one attempt failed in a way worth retrying; `what` says how (for the log and the final error)."""

    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


class _DeadlinePassed(Exception):
    """Internal: no time is left for another request or wait; `last` says what the last attempt got."""

    def __init__(self, last: str) -> None:
        super().__init__(last)
        self.last = last


def page_plan(users: int, batch_size: int) -> list[tuple[int, int]]:
    """(page, how many records of it to keep) for N users in pages of b: [(1, b), ..., (k, N - (k-1)*b)]."""
    if users < 0:
        raise ValueError(f"users must be >= 0, got {users}")
    if not 1 <= batch_size <= MAX_PAGE_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_PAGE_SIZE} (the API's limit), got {batch_size}")
    pages = math.ceil(users / batch_size)
    return [(page, min(batch_size, users - (page - 1) * batch_size)) for page in range(1, pages + 1)]


def _retry_after(response: requests.Response, cap: float) -> float | None:
    """The server's Retry-After in seconds (number or HTTP date, parsed by urllib3), at most `cap`."""
    header = response.headers.get("Retry-After")
    if header is None:
        return None
    try:
        return min(max(Retry().parse_retry_after(header), 0.0), cap)
    except InvalidHeader:
        return None  # unparseable: fall back to our own backoff


def _attempt(session: requests.Session, url: str, params: dict[str, Any], timeout: float,
             deadline: float) -> requests.Response:
    """One GET with at most what is left of the deadline as its timeout; transient failures raise `_Transient`."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _DeadlinePassed("no time left for a request")
    try:
        response = session.get(url, params=params, timeout=min(timeout, remaining))
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError) as exc:  # the last: a body cut off mid-transfer
        raise _Transient(type(exc).__name__) from exc
    if response.status_code in RETRY_STATUSES:
        cap = getattr(session, "max_retry_after", 60.0)
        raise _Transient(f"HTTP {response.status_code}", _retry_after(response, cap))
    return response


def _get_with_retries(session: requests.Session, url: str, params: dict[str, Any], timeout: float,
                      deadline: float) -> requests.Response:
    """`_attempt`, retried with tenacity within the session's retry budget and the deadline.

    Raises the last `_Transient` when the retries are spent, `_DeadlinePassed`
    when the next wait or request would end past the deadline.
    """
    retries = getattr(session, "retries", 5)
    backoff = tenacity.wait_exponential(multiplier=getattr(session, "backoff_factor", 0.5),
                                        max=getattr(session, "backoff_max", 30.0))
    out_of_time = False

    def wait(state: tenacity.RetryCallState) -> float:
        server_asked = getattr(state.outcome.exception(), "retry_after", None)
        return backoff(state) if server_asked is None else server_asked

    def stop(state: tenacity.RetryCallState) -> bool:
        nonlocal out_of_time
        # Never start a wait that ends past the deadline: it could only end in a timeout.
        out_of_time = time.monotonic() + state.upcoming_sleep >= deadline
        return out_of_time or state.attempt_number > retries

    def log_retry(state: tenacity.RetryCallState) -> None:
        log.warning("data source: %s for GET %s; retry %d of %d in %.1f s", state.outcome.exception(),
                    request_url(url, params), state.attempt_number, retries, state.upcoming_sleep)

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Transient), wait=wait, stop=stop,
                                 before_sleep=log_retry, reraise=True)
    try:
        return retrying(_attempt, session, url, params, timeout, deadline)
    except _Transient as exc:
        if out_of_time:
            raise _DeadlinePassed(exc.what) from exc
        raise


def fetch_page(session: requests.Session, url: str, params: dict[str, Any], timeout: float,
               deadline: float | None = None, deadline_seconds: float | None = None) -> dict[str, Any]:
    """GET one page and return its JSON body; every failure becomes a `DataSourceError` saying what to do.

    `deadline` is a `time.monotonic()` instant (None: none); `deadline_seconds` is the
    configured budget, named in the error when the deadline passes.
    """
    where = request_url(url, params)
    try:
        response = _get_with_retries(session, url, params, timeout, math.inf if deadline is None else deadline)
    except _DeadlinePassed as exc:
        raise _deadline_error(where, deadline_seconds, exc.last) from exc
    except requests.exceptions.RequestException as exc:  # not transient: a malformed URL, a bad encoding...
        raise DataSourceError(f"data source request failed ({type(exc).__name__}: {exc}) for GET {where}. "
                              "Check DATASOURCE_URL (e.g. http://localhost:8765/api/).") from exc
    except _Transient as exc:
        if exc.what.startswith("HTTP"):
            raise DataSourceError(
                f"data source kept failing after retries (last answer {exc.what}): GET {where}. "
                "It is overloaded or broken; wait and re-run with the same seed (the run is replayable)."
            ) from exc
        raise DataSourceError(
            f"cannot reach the data source at {url} ({exc.what}) after retries. "
            "Is it running? Start the stack with `make up` (or `python -m standin.randomuser`), "
            "or point DATASOURCE_URL at a reachable randomuser.me-compatible API."
        ) from exc
    return _page_body(response, where)


def _deadline_error(where: str, deadline_seconds: float | None, last: str) -> DataSourceError:
    budget = "the deadline" if deadline_seconds is None else f"DATASOURCE_DEADLINE_SECONDS={deadline_seconds:g} s"
    return DataSourceError(
        f"data source: the run's fetch did not finish within {budget} (last: {last}; GET {where}). "
        "The source is rate-limiting or failing; re-run later with the same seed (the run is replayable), "
        "or raise DATASOURCE_DEADLINE_SECONDS."
    )


def _page_body(response: requests.Response, where: str) -> dict[str, Any]:
    """The JSON page of a final (non-retried) answer, or a DataSourceError that says what is wrong."""
    try:
        body = response.json()
    except ValueError as exc:
        raise DataSourceError(
            f"data source answered HTTP {response.status_code} with non-JSON content "
            f"({response.headers.get('Content-Type', 'no Content-Type')}) at GET {where}: "
            f"{redact_text(response.text[:200])!r}. Not retried: check DATASOURCE_URL points at a "
            "randomuser.me-compatible API."
        ) from exc
    if isinstance(body, dict) and "error" in body:
        raise DataSourceError(f"data source refused GET {where}: {redact_text(str(body['error'])[:200])}")
    if not response.ok:
        raise DataSourceError(f"data source answered HTTP {response.status_code} for GET {where}: "
                              f"{redact_text(response.text[:200])!r}")
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        shape = sorted(body)[:10] if isinstance(body, dict) else type(body).__name__
        raise DataSourceError(
            f"data source sent no `results` list for GET {where} (got {shape}). "
            "Check DATASOURCE_URL points at a randomuser.me-compatible API (v1.4)."
        )
    return body


def normalize_nat(nat: str) -> str:
    """' gb, ir ' -> 'GB,IR': the API's comma list, whatever spacing or case a user typed."""
    return ",".join(part.strip().upper() for part in nat.split(",") if part.strip())


def request_url(url: str, params: dict[str, Any]) -> str:
    """The full request URL (kept with each batch and in dead-letter headers, so a page can be re-fetched)."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def fetch_batches(
    session: requests.Session,
    url: str,
    users: int,
    batch_size: int,
    seed: str,
    nat: str = "",
    timeout: float = 30.0,
    deadline_seconds: float | None = None,
) -> Iterator[Batch]:
    """Yield N users as pages of up to `batch_size` raw dicts (login secrets dropped), in order, replayably.

    `nat` is the API's comma list of nationalities (any case/spacing); empty means all. `seed` is
    required: without it the API picks one per request and pages would overlap. `deadline_seconds`
    bounds the time spent fetching, all pages and retries together (what the caller does with a
    page between two fetches does not count); None means no bound.
    """
    if not seed:
        raise ValueError("seed must be non-empty: paging is only stable for a fixed seed")
    budget = math.inf if deadline_seconds is None else deadline_seconds
    for page, keep in page_plan(users, batch_size):
        params: dict[str, Any] = {"results": batch_size, "seed": seed, "page": page}
        if normalize_nat(nat):
            params["nat"] = normalize_nat(nat)
        started = time.monotonic()
        body = fetch_page(session, url, params, timeout, started + budget, deadline_seconds)
        budget -= time.monotonic() - started
        records = body["results"]
        if len(records) < keep:
            raise DataSourceError(
                f"data source returned {len(records)} records for page {page}, expected {batch_size}: "
                f"GET {request_url(url, params)}"
            )
        yield Batch(page=page, seed=seed, records=[without_secrets(r) for r in records[:keep]],
                    source=request_url(url, params))
