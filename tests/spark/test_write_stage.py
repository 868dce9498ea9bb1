"""One batch with every kind of record that used to stop the job or land wrong; the rest of the batch lands exactly.

- users born 1899-12-31, 0001-01-01 and 9999-12-31: valid Avro, and Spark 3.5
  used to throw on the first (to_avro rebase) and shift the second by two days;
- a user Cassandra refuses (three 6 MB strings: one CQL message over the
  native protocol's 16 MiB): dead-lettered with stage `write`, reason, source
  position and schema id, original bytes;
- one id twice in one partition, the later offset with the OLDER timestamp:
  the later offset wins;
- after the batch, the consumer group holds the batch's end offsets.
"""

from __future__ import annotations

import datetime as dt

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from core.dead_letter import WRITE, read_headers
from core.job_state import job_state_path, read_job_state
from spark.progress import progress_path, read_progress
from spark.stream_job import JobOptions, UserStreamJob
from tests.spark.harness import assert_rows_match
from tests.spark.users import V1, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]

UTC = dt.timezone.utc
BIG_FIELD = 6 * 1024 * 1024  # under the Avro field cap (8 MiB); three of them exceed Cassandra's 16 MiB message
TOPIC_MAX_BYTES = 32 * 1024 * 1024


def allow_big_records(corner) -> Producer:
    """Both topics take 32 MiB records (the broker default is 1 MiB); a producer that may send them."""
    admin = AdminClient(corner.settings.kafka_config())
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
            ConfigEntry("max.message.bytes", str(TOPIC_MAX_BYTES), incremental_operation=AlterConfigOpType.SET)])
        for topic in (corner.settings.users_topic, corner.settings.dead_letter_topic)
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(timeout=30)
    return Producer({**corner.settings.kafka_config(), "message.max.bytes": TOPIC_MAX_BYTES})


def test_old_dates_refused_rows_and_duplicates_in_one_batch(spark, corner_factory):
    corner = corner_factory("write_stage")
    run = corner.settings.users_topic
    schema_id = corner.register(V1)
    serializer = corner.serializer(V1)
    producer = allow_big_records(corner)

    users = [make_user(i, run) for i in range(12)]
    users[1]["date_of_birth"] = dt.datetime(1899, 12, 31, tzinfo=UTC)
    users[2]["date_of_birth"] = dt.datetime(1, 1, 1, tzinfo=UTC)
    users[3]["date_of_birth"] = dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    too_big = make_user(100, run)
    too_big.update(street_name="s" * BIG_FIELD, city="c" * BIG_FIELD, state="t" * BIG_FIELD)
    first, second = make_user(200, run), make_user(200, run)  # one id, sent twice to partition 0
    # The later record's text sorts lower: written together without the dedupe, both cells would carry one
    # timestamp and Cassandra would keep the greater value, the earlier record's.
    first["city"], second["city"] = "newer timestamp, earlier offset", "later offset, older timestamp"
    now_ms = int(dt.datetime.now(UTC).timestamp() * 1000)

    sent = {}
    for user in users + [too_big]:
        sent[user["id"]] = corner.encode(serializer, user)
        producer.produce(run, key=user["id"].encode(), value=sent[user["id"]])
    producer.produce(run, key=first["id"].encode(), value=corner.encode(serializer, first), partition=0, timestamp=now_ms)
    producer.produce(run, key=second["id"].encode(), value=corner.encode(serializer, second), partition=0,
                     timestamp=now_ms - 3_600_000)
    assert producer.flush(60) == 0

    # Both topics take 32 MiB records here, so the dead letter may keep the whole record
    # (by default it keeps the first DEAD_LETTER_MAX_VALUE_BYTES, 1 MB: tests/spark/test_dead_letter_value.py).
    settings = corner.settings.model_copy(update={"dead_letter_max_value_bytes": TOPIC_MAX_BYTES})
    options = JobOptions.from_settings(settings, trigger="available_now")
    query = UserStreamJob(spark, settings, options).start()
    query.awaitTermination(600)  # about a minute on an idle machine; the CI's 2 cores are shared
    assert not query.isActive, "the batch did not finish in 10 minutes"
    assert query.exception() is None, query.exception()

    assert_rows_match(corner.rows(), users + [second])

    letters = corner.dead_letters(expected=1)
    assert [m.key() for m in letters] == [too_big["id"].encode()], "only the refused row is dead-lettered"
    letter = letters[0]
    headers = read_headers(letter.headers())
    assert letter.value() == sent[too_big["id"]], "the original bytes, untouched"
    assert "dead_letter.original_bytes" not in headers, "a whole record needs no size header"
    assert headers["dead_letter.stage"] == WRITE
    assert headers["dead_letter.reason"].startswith("Cassandra refused the row: ")
    assert "exceeds allowed maximum" in headers["dead_letter.reason"], headers["dead_letter.reason"]
    assert headers["dead_letter.schema_id"] == str(schema_id)
    topic, partition, offset = headers["dead_letter.source"].rsplit("/", 2)
    assert topic == run and int(partition) in range(3) and int(offset) >= 0

    progress = read_progress(progress_path(options.checkpoint))
    assert progress["totals"] == {"records_in": 15, "rows_written": 13, "dead_lettered": 1, "batches": 1}, progress
    assert progress["batch"]["dead_lettered_at_write"] == 1
    ends = {int(p): offset for p, offset in progress["end_offsets"][run].items()}
    assert sum(ends.values()) == 15
    assert corner.group_offsets() == ends, "the consumer group holds the batch's end offsets"
    assert read_job_state(job_state_path(options.checkpoint))["state"] == "running"


def test_counts_stay_exact_when_the_first_write_fails_on_a_row(spark, corner_factory):
    """No id twice, so the batch takes the usual path, whose counts Spark observes during the write.

    The first write fails on the refused row after other tasks finished:
    Spark keeps that failed action's partial counts, which must not become
    the batch's (a dead record missed there would never be dead-lettered).
    """
    corner = corner_factory("write_counts")
    run = corner.settings.users_topic
    schema_id = corner.register(V1)
    serializer = corner.serializer(V1)
    producer = allow_big_records(corner)
    users = [make_user(300 + i, run) for i in range(12)]
    too_big = make_user(400, run)
    too_big.update(street_name="s" * BIG_FIELD, city="c" * BIG_FIELD, state="t" * BIG_FIELD)
    for user in users + [too_big]:
        producer.produce(run, key=user["id"].encode(), value=corner.encode(serializer, user))
    truncated = corner.encode(serializer, make_user(401, run))[:12]
    producer.produce(run, key=b"truncated", value=truncated)
    assert producer.flush(60) == 0

    settings = corner.settings.model_copy(update={"dead_letter_max_value_bytes": TOPIC_MAX_BYTES})
    options = JobOptions.from_settings(settings, trigger="available_now")
    query = UserStreamJob(spark, settings, options).start()
    query.awaitTermination(600)
    assert not query.isActive, "the batch did not finish in 10 minutes"
    assert query.exception() is None, query.exception()

    assert_rows_match(corner.rows(), users)
    letters = {m.key(): read_headers(m.headers()) for m in corner.dead_letters(expected=2)}
    assert {key: headers["dead_letter.stage"] for key, headers in letters.items()} == {
        too_big["id"].encode(): WRITE, b"truncated": "decode"}
    assert letters[b"truncated"]["dead_letter.schema_id"] == str(schema_id)
    progress = read_progress(progress_path(options.checkpoint))
    assert progress["totals"] == {"records_in": 14, "rows_written": 12, "dead_lettered": 2, "batches": 1}, progress
