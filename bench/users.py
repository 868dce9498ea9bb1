"""Users for load benchmarks: fetched from the data source and transformed once, before anything is timed.

A load run publishes hundreds of thousands of users; fetching and keeping
that many would measure the data source and fill memory. So a pool of real
users (HTTP fetch from the stand-in, `producer.transform`) is prepared up
front and replayed with a fresh `id` per published record: every record is
a distinct Cassandra row, so its write time can be looked up by its id.

Use:
    pool = fetch_pool(settings, 20_000)
    for user in fresh_users(pool, 1000): ...
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator

from core.settings import Settings
from producer import source as source_stage
from producer.transform import User, transform

PAGE = 5000  # the API's largest page


class PoolError(RuntimeError):
    """The data source gave no usable users; the message says what to check."""


def fetch_pool(settings: Settings, size: int, seed: str = "bench-load") -> list[User]:
    """`size` users fetched over HTTP from settings.datasource_url and transformed; rejects are left out."""
    session = source_stage.make_session(settings.datasource_retries, settings.datasource_backoff_factor)
    now = dt.datetime.now(dt.timezone.utc)
    pool: list[User] = []
    try:
        for batch in source_stage.fetch_batches(session, settings.datasource_url, size, min(size, PAGE), seed,
                                                timeout=settings.datasource_timeout_seconds):
            pool += [user for user in (transform(raw, now) for raw in batch.records) if isinstance(user, User)]
    finally:
        session.close()
    if len(pool) < size // 2:
        raise PoolError(f"only {len(pool)} of {size} users from {settings.datasource_url} passed the transform; "
                        "is DATASOURCE_URL the stand-in (`python -m stack up`)?")
    return pool


def fresh_users(pool: list[User], count: int, start: int = 0) -> Iterator[User]:
    """`count` users cycling through the pool, each with a new random id (so each is its own row)."""
    for i in range(start, start + count):
        yield dataclasses.replace(pool[i % len(pool)], id=str(uuid.uuid4()))
