"""The batch summaries, without Kafka: offsets, schema ids and repeated keys from hand-made records.

The usual path writes a batch without the dedupe when `summarize_consumed`
says no key came twice, so a missed repeat would let Cassandra keep either
record of that id: these pin the repeat check across partitions and schema ids.
"""

from __future__ import annotations

import datetime as dt

import pytest

from spark.decode import with_header
from spark.summary import summarize_consumed
from tests.spark.test_decode import KAFKA_COLUMNS

pytestmark = pytest.mark.spark

TS = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def record(key: str | None, schema_id: int, partition: int, offset: int) -> tuple:
    """A Kafka record whose value is only a Confluent header (the summary reads no further)."""
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"
    return (key.encode() if key else None, value, "users", partition, offset, TS, None)


def consumed(spark, records: list[tuple]):
    return summarize_consumed(with_header(spark.createDataFrame(records, KAFKA_COLUMNS)))


def test_offsets_ids_and_no_repeat(spark):
    summary = consumed(spark, [record("a", 1, 0, 10), record("b", 1, 0, 11), record("c", 2, 1, 5), record(None, 1, 1, 6)])
    assert summary.records_in == 4
    assert summary.schema_ids == [1, 2]
    assert summary.start_offsets == {"users": {"0": 10, "1": 5}}
    assert summary.end_offsets == {"users": {"0": 12, "1": 7}}
    assert not summary.keys_repeat, "a null key is no repeat (decode dead-letters it)"


@pytest.mark.parametrize("second", [
    record("a", 1, 0, 11),  # same partition and schema id
    record("a", 2, 0, 11),  # the next schema version of the same user, in the same batch
    record("a", 1, 1, 3),  # another partition (a key that moved when partitions were added)
], ids=["same-group", "other-schema-id", "other-partition"])
def test_a_key_twice_is_seen_in_any_group(spark, second):
    summary = consumed(spark, [record("a", 1, 0, 10), record("b", 1, 0, 12), second])
    assert summary.keys_repeat
