"""Source stage: fetch users from a randomuser.me-compatible API, in replayable pages.

N users are fetched as pages 1..ceil(N/b) of `results=b` with a fixed seed, so
the same (seed, N, b, nat) always fetches the same users: a failed run can be
replayed and Cassandra's upsert by `login.uuid` makes the replay harmless.
The last page is fetched at full size and cut locally, so page p is the same
whatever N is.

Transient failures (HTTP 429 and 5xx, connection errors, read timeouts) are
retried by urllib3's `Retry` with exponential backoff, honouring
`Retry-After`. What is still failing after the retries, and any `{"error": ...}`
body, raises `DataSourceError` with the URL and what to do about it.

Use:
    from producer.source import make_session, fetch_batches
    session = make_session(retries=5)
    for batch in fetch_batches(session, "http://localhost:8765/api/", users=1000, batch_size=500, seed="abc"):
        print(batch.page, len(batch.records), batch.source)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

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


def make_session(retries: int = 5, backoff_factor: float = 0.5, backoff_max: float = 30.0) -> requests.Session:
    """A Session that retries what is worth retrying, and nothing else.

    Status retries cover 429 (rate limit) and 5xx; `Retry-After` is honoured
    (urllib3's default) so a rate-limited client waits as long as asked.
    Client errors (4xx other than 429) are not retried: they will not get better.
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Accept"] = "application/json"
    return session


def page_plan(users: int, batch_size: int) -> list[tuple[int, int]]:
    """(page, how many records of it to keep) for N users in pages of b: [(1, b), ..., (k, N - (k-1)*b)]."""
    if users < 0:
        raise ValueError(f"users must be >= 0, got {users}")
    if not 1 <= batch_size <= MAX_PAGE_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_PAGE_SIZE} (the API's limit), got {batch_size}")
    pages = math.ceil(users / batch_size)
    return [(page, min(batch_size, users - (page - 1) * batch_size)) for page in range(1, pages + 1)]


def fetch_page(session: requests.Session, url: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """GET one page and return its JSON body; every failure becomes a `DataSourceError` saying what to do."""
    where = request_url(url, params)
    try:
        response = session.get(url, params=params, timeout=timeout)
    except requests.exceptions.RetryError as exc:
        raise DataSourceError(
            f"data source kept failing after retries ({_last_status(exc)}): GET {where}. "
            "It is overloaded or broken; wait and re-run with the same seed (the run is replayable)."
        ) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise DataSourceError(
            f"cannot reach the data source at {url} ({type(exc).__name__}) after retries. "
            "Is it running? Start the stack with `make up` (or `python -m standin.randomuser`), "
            "or point DATASOURCE_URL at a reachable randomuser.me-compatible API."
        ) from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise DataSourceError(
            f"data source answered HTTP {response.status_code} with non-JSON content at GET {where}: "
            f"{response.text[:200]!r}. Check DATASOURCE_URL points at a randomuser.me-compatible API."
        ) from exc
    if isinstance(body, dict) and "error" in body:
        raise DataSourceError(f"data source refused GET {where}: {body['error']}")
    if not response.ok:
        raise DataSourceError(f"data source answered HTTP {response.status_code} for GET {where}: {response.text[:200]!r}")
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise DataSourceError(
            f"data source sent no `results` list for GET {where}: {json.dumps(body)[:200]}. "
            "Check DATASOURCE_URL points at a randomuser.me-compatible API (v1.4)."
        )
    return body


def normalize_nat(nat: str) -> str:
    """' gb, ir ' -> 'GB,IR': the API's comma list, whatever spacing or case a user typed."""
    return ",".join(part.strip().upper() for part in nat.split(",") if part.strip())


def request_url(url: str, params: dict[str, Any]) -> str:
    """The full request URL (kept with each batch and in dead-letter headers, so a page can be re-fetched)."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _last_status(exc: requests.exceptions.RetryError) -> str:
    """The reason urllib3 gave up, e.g. 'too many 503 error responses'."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return str(reason or exc)


def fetch_batches(
    session: requests.Session,
    url: str,
    users: int,
    batch_size: int,
    seed: str,
    nat: str = "",
    timeout: float = 30.0,
) -> Iterator[Batch]:
    """Yield N users as pages of up to `batch_size` raw dicts, in order, replayably.

    `nat` is the API's comma list of nationalities (any case/spacing); empty means all. `seed` is
    required: without it the API picks one per request and pages would overlap.
    """
    if not seed:
        raise ValueError("seed must be non-empty: paging is only stable for a fixed seed")
    for page, keep in page_plan(users, batch_size):
        params: dict[str, Any] = {"results": batch_size, "seed": seed, "page": page}
        if normalize_nat(nat):
            params["nat"] = normalize_nat(nat)
        body = fetch_page(session, url, params, timeout)
        records = body["results"]
        if len(records) < keep:
            raise DataSourceError(
                f"data source returned {len(records)} records for page {page}, expected {batch_size}: "
                f"GET {request_url(url, params)}"
            )
        yield Batch(page=page, seed=seed, records=records[:keep], source=request_url(url, params))
