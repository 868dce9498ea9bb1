"""The batch summaries, without Kafka: offsets, schema ids and repeated keys from hand-made records.

The usual path writes a batch without the dedupe when the write's observed
metrics (or, for a partition not seen before, `summarize_consumed`) say no key
came twice, so a missed repeat would let Cassandra keep either record of that
id: these pin the repeat check across partitions and schema ids, and that the
two ways agree.
"""

from __future__ import annotations

import datetime as dt

import pytest

from spark.decode import with_header
from pyspark.sql import functions as F

from spark.summary import ObservedBatch, ObservedColumns, summarize_consumed
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


def observed(spark, records: list[tuple], partitions: set[tuple[str, int]], check_keys: bool = True, dead: int = 0):
    """What ObservedBatch learns while an action (here a no-op write) runs over the batch; the first `dead` records get a reason."""
    framed = with_header(spark.createDataFrame(records, KAFKA_COLUMNS))
    decoded = framed.withColumn("reason", F.when(F.col("offset") < F.lit(dead), F.lit("bad")))
    batch = ObservedBatch(decoded, 0, ObservedColumns(frozenset(partitions), check_keys))
    batch.frame.write.format("noop").mode("overwrite").save()
    return batch.get()


def test_the_write_observes_what_the_summary_job_would_read(spark):
    records = [record("a", 1, 0, 10), record("b", 1, 0, 11), record("c", 2, 1, 5), record(None, 1, 1, 6)]
    seen, good, dead = observed(spark, records, {("users", 0), ("users", 1), ("users", 2)})
    assert seen == consumed(spark, records), "observed and summarized must agree field by field"
    assert (good, dead) == (4, 0)
    assert (observed(spark, records, {("users", 0), ("users", 1)}, dead=11)[1:]) == (1, 3)


@pytest.mark.parametrize("second", [record("a", 1, 0, 11), record("a", 2, 0, 11), record("a", 1, 1, 3)],
                         ids=["same-group", "other-schema-id", "other-partition"])
def test_the_write_observes_a_key_twice(spark, second):
    seen, _, _ = observed(spark, [record("a", 1, 0, 10), record("b", 1, 0, 12), second], {("users", 0), ("users", 1)})
    assert seen.keys_repeat


def test_a_partition_not_listed_or_an_uncapped_batch_is_left_to_the_summary_job(spark):
    records = [record("a", 1, 0, 10), record("b", 1, 2, 11)]
    assert observed(spark, records, {("users", 0)})[0] is None, "partition 2's offsets were not observed"
    assert observed(spark, records, {("users", 0), ("users", 2)}, check_keys=False)[0] is None, "keys were not checked"
    assert observed(spark, records, {("users", 0), ("users", 2)})[0] is not None
