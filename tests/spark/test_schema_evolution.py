"""Schema evolution while the query runs: ALTER TABLE, register v2, mixed v1/v2 records all land correctly."""

from __future__ import annotations

import pytest

from core.cassandra_schema import add_columns_for, connect
from spark.progress import progress_path, read_progress
from spark.sink import SchemaMismatchError
from spark.stream_job import JobOptions, UserStreamJob
from tests.spark.harness import as_stored, wait_until
from tests.spark.users import V1, make_user, v2_schema

pytestmark = [pytest.mark.integration, pytest.mark.spark]

V2 = v2_schema("favourite_colour", default="unknown")


def assert_row(row: dict, expected: dict) -> None:
    stored = {k: (str(v) if k == "id" else v) for k, v in row.items()}
    different = {k: (v, stored.get(k)) for k, v in as_stored(expected).items() if stored.get(k) != v}
    assert not different, f"user {expected['id']}: (expected, stored) differ: {different}"


def test_mixed_v1_v2_records_decode_with_their_own_schema(spark, corner_factory):
    corner = corner_factory("evolve")
    run = corner.settings.users_topic
    v1_id = corner.register(V1)
    v1 = corner.serializer(V1)
    before = [make_user(i, run) for i in range(60)]
    corner.produce_users(v1, before)

    options = JobOptions.from_settings(corner.settings, trigger="processing", interval="1 second")
    query = UserStreamJob(spark, corner.settings, options).start()
    try:
        wait_until(lambda: corner.count() == 60, 120, "60 v1 rows")
        # The evolution procedure: the table first, then the registry.
        with connect(corner.settings) as session:
            assert add_columns_for(corner.settings, session, V2, dry_run=False) == [
                f"ALTER TABLE {corner.settings.cassandra_keyspace}.users ADD IF NOT EXISTS favourite_colour text"
            ]
        v2_id = corner.register(V2)  # the registry enforces BACKWARD: a field with a default passes
        assert v2_id != v1_id
        v2 = corner.serializer(V2)
        mixed = [make_user(i, run) for i in range(60, 160)]
        for i, user in enumerate(mixed):
            if i % 2:
                user["favourite_colour"] = ["green", "زرد", "синий"][i % 3]
        framed = [(u["id"].encode(), corner.encode(v2 if "favourite_colour" in u else v1, u)) for u in mixed]
        # The job re-reads the latest reader when a new writer id shows up: until the first v2
        # record arrives, v1 records are still read as v1. Send that one first, so every v1
        # record below is known to be read as v2 (with the default).
        first_v2 = next(i for i, u in enumerate(mixed) if "favourite_colour" in u)
        corner.produce_raw([framed[first_v2]])
        progress_file = progress_path(options.checkpoint)
        wait_until(lambda: (read_progress(progress_file) or {}).get("reader_schema_id") == v2_id, 120, "the v2 reader")
        corner.produce_raw(framed[:first_v2] + framed[first_v2 + 1:])
        wait_until(lambda: corner.count() == 160, 120, "all 160 rows")
        # The batch writes its rows before its progress record: stopping right at count 160
        # can interrupt it between the two, so wait for the record too.
        wait_until(
            lambda: sum(((read_progress(progress_file) or {}).get("end_offsets") or {}).get(run, {}).values()) == 160,
            60, "the progress record of the last batch",
        )
        assert query.isActive, "the query stopped"
    finally:
        query.stop()
    assert query.exception() is None

    rows = corner.rows()
    assert len(rows) == 160
    for user in before:  # written while v1 was the reader: the v2 column did not exist yet
        assert_row(rows[user["id"]], {**user, "favourite_colour": None})
        assert rows[user["id"]]["schema_id"] == v1_id
    for user in mixed:
        row = rows[user["id"]]
        if "favourite_colour" in user:
            assert_row(row, user)
            assert row["schema_id"] == v2_id
        else:  # v1 bytes resolved into the v2 reader: the default fills the new field
            assert_row(row, {**user, "favourite_colour": "unknown"})
            assert row["schema_id"] == v1_id
    assert read_progress(progress_file)["reader_schema_id"] == v2_id
    assert corner.dead_letters(expected=0, timeout=3) == []


def test_new_version_without_its_column_stops_the_query_with_the_fix(spark, corner_factory):
    """Registering before ALTER TABLE: the job must stop with the ALTER TABLE to run, not drop the field."""
    corner = corner_factory("nocolumn")
    run = corner.settings.users_topic
    corner.register(V1)
    options = JobOptions.from_settings(corner.settings, trigger="processing", interval="1 second")
    query = UserStreamJob(spark, corner.settings, options).start()
    try:
        corner.register(V2)
        corner.produce_users(corner.serializer(V2), [dict(make_user(1, run), favourite_colour="red")])
        wait_until(lambda: not query.isActive, 120, "the query to stop on the missing column")
    finally:
        query.stop()
    message = str(query.exception())
    assert "has no column for favourite_colour" in message and "ALTER TABLE" in message, message
    assert corner.count() == 0

    # And at start-up, before any batch:
    with pytest.raises(SchemaMismatchError, match="favourite_colour"):
        UserStreamJob(spark, corner.settings, options).prepare()
