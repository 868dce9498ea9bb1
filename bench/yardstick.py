"""A CPU yardstick for a bench whose baseline is absolute: how fast this machine serializes users right now.

Why: the load bench's baseline is the offered rate, not something measured
in the same run, and the shared 2-core machine's speed moves from day to
day. The producer bench's raw fastavro loop ran at 44,829 users/s in one
session and 29,513 in another, and the load bench sustained 4,000 users/s
and then 2,000 with the same job code. Two load runs compare only beside
their yardsticks: the same pure-CPU work (fastavro's schemaless_writer, no
I/O) timed at the start of each run.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from typing import Any

import fastavro

from core.subjects import USER_SCHEMA_FILE
from producer.user import User, avro_fields

REPEATS = 5


def parsed_user_schema() -> Any:
    """schemas/user.avsc parsed by fastavro: what the raw loops and the yardstick write with."""
    return fastavro.parse_schema(json.loads(USER_SCHEMA_FILE.read_text(encoding="utf-8")))


def fastavro_users_per_second(users: list[User], repeats: int = REPEATS) -> float:
    """Users/s of fastavro.schemaless_writer over `users` with the project's schema: the median of `repeats` passes."""
    if not users:
        raise ValueError("the yardstick needs users to serialize")
    schema = parsed_user_schema()
    records = [avro_fields(user) for user in users]
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for record in records:
            fastavro.schemaless_writer(io.BytesIO(), schema, record)
        seconds.append(time.perf_counter() - started)
    return round(len(records) / statistics.median(seconds), 1)
