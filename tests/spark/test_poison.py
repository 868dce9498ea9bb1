"""Poison records between good ones: each is dead-lettered with its reason and bytes; the query keeps running."""

from __future__ import annotations

import copy
import json
import random

import pytest
from confluent_kafka.schema_registry import Schema

from core.dead_letter import DECODE, read_headers
from spark.progress import progress_path, read_progress
from spark.stream_job import JobOptions, UserStreamJob
from tests.spark.harness import assert_rows_match, wait_until
from tests.spark.users import V1, avro_bytes, framed, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def foreign_schema() -> dict:
    """A User whose street_number is a string: Avro cannot resolve it into the reader's int."""
    schema = copy.deepcopy(V1)
    for f in schema["fields"]:
        if f["name"] == "street_number":
            f["type"] = "string"
    return schema


def test_poison_records_are_dead_lettered_and_the_query_keeps_running(spark, corner_factory):
    corner = corner_factory("poison")
    run = corner.settings.users_topic
    schema_id = corner.register(V1)
    serializer = corner.serializer(V1)
    users = [make_user(i, run) for i in range(80)]
    first, second = users[:40], users[40:]
    corner.produce_users(serializer, first)

    good = corner.encode(serializer, users[0])
    foreign = corner.registry.register_schema(f"{run}-foreign-value", Schema(json.dumps(foreign_schema()), "AVRO"))
    corner.cleanups.append(lambda: corner.delete_subject(f"{run}-foreign-value"))
    foreign_user = {**make_user(999, run), "street_number": "12b"}
    rng = random.Random(7)
    unknown_id = 987_654_321
    poison = {  # key -> (value, expected reason prefix)
        b"p-random": (b"\x7f" + rng.randbytes(60), "wrong magic byte 0x7f"),
        b"p-magic": (b"\x01" + good[1:], "wrong magic byte 0x01"),
        b"p-unknown": (framed(unknown_id, good[5:]), f"unknown schema id {unknown_id}"),
        b"p-truncated": (good[: len(good) // 2], f"corrupt or truncated Avro for schema id {schema_id}"),
        b"p-garbage": (framed(schema_id, rng.randbytes(100)), f"corrupt or truncated Avro for schema id {schema_id}"),
        b"p-null": (None, "null value"),
        b"p-short": (b"\x00\x00", "too short: 2 bytes"),
        b"p-foreign": (framed(foreign, avro_bytes(foreign_schema(), foreign_user)), f"schema id {foreign} cannot be read as"),
        b"p-other-key": (good, f"Kafka key p-other-key is not the record's id {users[0]['id']}"),
    }

    options = JobOptions.from_settings(corner.settings, trigger="processing", interval="1 second")
    query = UserStreamJob(spark, corner.settings, options).start()
    try:
        wait_until(lambda: corner.count() == 40, 120, "the first 40 rows")
        # Poison records between good ones, while the query runs.
        mixed = []
        bad = list(poison.items())
        for i, user in enumerate(second):
            mixed.append((user["id"].encode(), corner.encode(serializer, user)))
            if i % 4 == 0 and bad:
                key, (value, _) = bad.pop()
                mixed.append((key, value))
        assert not bad
        corner.produce_raw(mixed)
        wait_until(lambda: corner.count() == 80, 120, "all 80 good rows")
        letters = corner.dead_letters(expected=len(poison))
        wait_until(
            lambda: (read_progress(progress_path(options.checkpoint)) or {}).get("totals", {}).get("records_in") == 80 + len(poison),
            60, "progress to count every record",
        )
        assert query.isActive, "a poison record stopped the query"
    finally:
        query.stop()
    assert query.exception() is None

    assert_rows_match(corner.rows(), users)
    assert sorted(m.key() for m in letters) == sorted(poison), "each poison record exactly once on the dead-letter topic"
    for message in letters:
        value, reason = poison[message.key()]
        headers = read_headers(message.headers())
        assert message.value() == value, f"{message.key()}: original bytes must be kept"
        assert headers["dead_letter.stage"] == DECODE
        assert headers["dead_letter.reason"].startswith(reason), (message.key(), headers["dead_letter.reason"])
        topic, partition, offset = headers["dead_letter.source"].rsplit("/", 2)
        assert topic == run and int(partition) in range(3) and int(offset) >= 0
    progress = read_progress(progress_path(options.checkpoint))
    assert progress["totals"]["dead_lettered"] == len(poison)
