"""What a micro-batch holds: counts, schema ids, offsets, and whether an id came twice.

Two ways to learn it, for the two paths of spark/batch.py:

* the usual path: `ObservedBatch` learns it while the write itself decodes
  the batch (Spark's observed metrics: no job of its own, no cache); a batch
  with records of a partition not seen before, or of uncapped size, gets its
  offsets and repeated keys from `summarize_consumed` afterwards, a job over
  the Kafka columns and the 5-byte header only;
* the rare path (a new schema id, or a key twice): `summarize` over the decoded
  batch, exact to the good rows' distinct ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from spark.faults import SparkStalled, run_bounded

# How long the observed counts may take to reach the driver after the write finished (Spark's listener
# bus delivers them in milliseconds); past it the batch is counted by a job of its own instead.
OBSERVED_COUNTS_TIMEOUT_SECONDS = 30.0
# Threads named so are the ones that carry observed counts and heartbeats: always in the dump of a late count.
WATCHED_THREADS = ("listener", "heartbeat", "dag-scheduler", "executor task")


class ObservedCountsLate(RuntimeError):
    """The write's observed counts did not reach the driver in time; the message holds the JVM's busy threads."""


@dataclass(frozen=True)
class BatchSummary:
    """What one pass over the batch learned: size, schema ids, good rows, distinct ids, offsets."""

    records_in: int
    schema_ids: list[int]
    start_offsets: dict[str, dict[str, int]]  # first offset in the batch per partition
    end_offsets: dict[str, dict[str, int]]  # next offset to read per partition (Kafka's committed-offset convention)
    decoded: int = 0  # records without a reason: rows to write
    dead: int = 0  # records with a reason: dead letters
    distinct_ids: int = 0  # distinct ids among the decoded records (= `decoded` unless an id came twice)

    @property
    def unique_ids(self) -> bool:
        """No id twice among the rows to write: the dedupe (a shuffle of every row) would change nothing."""
        return self.distinct_ids == self.decoded


@dataclass(frozen=True)
class Consumed:
    """The batch as consumed, before any decode: per-partition offsets, header schema ids, repeated keys."""

    records_in: int
    schema_ids: list[int]
    start_offsets: dict[str, dict[str, int]]
    end_offsets: dict[str, dict[str, int]]
    keys_repeat: bool  # some Kafka key came twice: the rows may hold an id twice

    def summary(self, good: int, dead: int) -> BatchSummary:
        """The batch's summary once the write's decode counted good and dead records (no key twice: ids distinct)."""
        return BatchSummary(self.records_in, self.schema_ids, self.start_offsets, self.end_offsets, good, dead, good)


def summarize(decoded: DataFrame) -> BatchSummary:
    """One Spark job over the decoded batch: per partition and schema id the counts and offsets, and the good rows' distinct ids.

    A rollup, so the whole batch's distinct count (the grand-total row) comes
    out of the same job as the per-group rows (the finest grouping level);
    the rows in between are ignored. The good rows' ids equal their Kafka
    keys (decode dead-letters any other), so the key is counted.
    """
    good = F.col("reason").isNull()
    rows = _rollup(decoded, F.count(F.when(good, 1)).alias("good"), F.countDistinct(F.when(good, F.col("key"))).alias("distinct"))
    groups = [row for row in rows if row.level == 0]
    records, good_rows_in = sum(row.records for row in groups), sum(row.good for row in groups)
    distinct = next((row.distinct for row in rows if row.level == 7), 0)
    ids, starts, ends = _positions(groups)
    return BatchSummary(records, ids, starts, ends, good_rows_in, records - good_rows_in, distinct)


def summarize_consumed(framed: DataFrame) -> Consumed:
    """One Spark job over the Kafka columns and header (spark.decode.with_header), no decode.

    A key twice among keyed records means an id may come twice among the
    rows; the converse holds too, since decode dead-letters a row whose id
    is not its key.
    """
    rows = _rollup(framed, F.count("key").alias("keyed"), F.countDistinct("key").alias("distinct"))
    groups = [row for row in rows if row.level == 0]
    total = next((row for row in rows if row.level == 7), None)
    ids, starts, ends = _positions(groups)
    keys_repeat = total is not None and total.distinct != total.keyed
    return Consumed(sum(row.records for row in groups), ids, starts, ends, keys_repeat)


def _rollup(frame: DataFrame, *extra: Any) -> list[Any]:
    """Rows per (topic, partition, schema id) (level 0) and the grand total (level 7): counts, offsets and `extra`."""
    return frame.rollup("topic", "partition", "schema_id").agg(
        F.grouping_id().alias("level"), F.count(F.lit(1)).alias("records"),
        F.min("offset").alias("first_offset"), F.max("offset").alias("last_offset"), *extra,
    ).where("level = 0 or level = 7").collect()


def _positions(groups: list[Any]) -> tuple[list[int], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Schema ids, first offsets and next offsets per topic and partition, from the rollup's finest rows."""
    starts: dict[str, dict[str, int]] = {}
    ends: dict[str, dict[str, int]] = {}
    for row in groups:
        part = str(row.partition)
        first = starts.setdefault(row.topic, {})
        first[part] = min(first.get(part, row.first_offset), row.first_offset)
        end = ends.setdefault(row.topic, {})
        end[part] = max(end.get(part, 0), row.last_offset + 1)
    return sorted({row.schema_id for row in groups if row.schema_id is not None}), starts, ends


class ObservedColumns:
    """The observed metrics of a batch, built once per set of partitions listed (each name is a py4j call per batch).

    Offsets need a group per topic and partition, which observed metrics do
    not have, so each listed partition gets its own min and max; records of a
    partition not listed are counted, and their batch is summarized by
    `summarize_consumed` instead. Whether a key came twice is the size of the
    set of the keys' 64-bit hashes against the count of keys: a set as large
    as the count means no key twice, exactly; a hash collision only sends a
    batch down the exact path. The set holds one hash per record, so it is
    observed only when `check_keys` (batches capped in size): an uncapped
    batch can be millions of records.
    """

    def __init__(self, partitions: frozenset[tuple[str, int]], check_keys: bool):
        self.partitions = partitions
        self.listed = sorted(partitions)  # the order of the first_<i>/last_<i> metrics
        self.check_keys = check_keys
        good, key = F.col("reason").isNull(), F.col("key")
        in_listed = F.lit(False)
        columns = [F.count(F.lit(1)).alias("records"), F.count(F.when(good, 1)).alias("good"),
                   F.concat_ws(",", F.collect_set("schema_id").cast("array<string>")).alias("schema_ids"), F.count(key).alias("keyed")]
        for index, (topic, partition) in enumerate(self.listed):
            here = (F.col("topic") == topic) & (F.col("partition") == partition)
            in_listed = in_listed | here
            columns += [F.min(F.when(here, F.col("offset"))).alias(f"first_{index}"),
                        F.max(F.when(here, F.col("offset"))).alias(f"last_{index}")]
        columns.append(F.count(F.when(~in_listed, 1)).alias("unlisted"))
        if check_keys:
            columns.append(F.size(F.collect_set(F.when(key.isNotNull(), F.xxhash64(key)))).alias("distinct_keys"))
        self.columns = columns


class ObservedBatch:
    """What the batch's write learns of it as it goes: counts, schema ids, offsets, repeated keys (Spark's observed metrics).

    Spark keeps the metrics of the first action over `frame` that finishes,
    failed or not (Observation.onFinish), and a failed one counted only its
    finished tasks. So `get` may be called only when that action, the
    write's first attempt, succeeded.
    """

    def __init__(self, decoded: DataFrame, batch_id: int, columns: ObservedColumns):
        self.observation = Observation(f"batch-{batch_id}")
        self.columns = columns
        # Also an optimizer barrier: a filter on `reason` above it is not pushed into the decode's projection,
        # which would decode every record once for the filter and again for the columns.
        self.frame = decoded.observe(self.observation, *columns.columns)

    def get(self) -> tuple[Consumed | None, int, int]:
        """(what was consumed, good, dead); what was consumed is None when a partition was not listed or keys were not checked."""
        metrics = self._metrics(OBSERVED_COUNTS_TIMEOUT_SECONDS)
        records, good = int(metrics["records"]), int(metrics["good"])
        if metrics["unlisted"] or not self.columns.check_keys:
            return None, good, records - good
        starts: dict[str, dict[str, int]] = {}
        ends: dict[str, dict[str, int]] = {}
        for index, (topic, partition) in enumerate(self.columns.listed):
            if metrics[f"first_{index}"] is not None:
                starts.setdefault(topic, {})[str(partition)] = int(metrics[f"first_{index}"])
                ends.setdefault(topic, {})[str(partition)] = int(metrics[f"last_{index}"]) + 1
        # A list: Observation.get hands arrays over as py4j objects, strings as strings.
        schema_ids = sorted(int(sid) for sid in metrics["schema_ids"].split(",") if sid)
        keys_repeat = int(metrics["distinct_keys"]) != int(metrics["keyed"])
        return Consumed(records, schema_ids, starts, ends, keys_repeat), good, records - good

    def _metrics(self, timeout: float) -> dict[str, Any]:
        """The observed row; bounded, since Spark's own wait has no timeout."""
        try:
            return run_bounded(lambda: self.observation.get, timeout, "the observed counts")
        except SparkStalled:
            raise ObservedCountsLate(f"the batch's observed counts did not arrive within {timeout:.0f} s of its write "
                                     f"(Spark's listener bus is slow or dropped the event); the JVM's threads then:\n"
                                     f"{busy_threads(self.frame.sparkSession)}") from None


def busy_threads(spark: SparkSession, frames: int = 12) -> str:
    """The driver JVM's running or blocked threads and the watched ones, with their stacks and locks.

    For the log of a late count: the next run's reader should see what held
    the listener bus or the heartbeat, not guess. java.lang.management, since
    Spark's own thread dump is not reachable from Python.
    """
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getThreadMXBean()
    dumped = []
    for info in bean.dumpAllThreads(True, True):
        name, state = str(info.getThreadName()), str(info.getThreadState().name())
        if state in ("RUNNABLE", "BLOCKED") or any(word in name.lower() for word in WATCHED_THREADS):
            stack = "\n".join(f"    at {frame}" for frame in list(info.getStackTrace())[:frames])
            lock = info.getLockName()
            dumped.append(f'"{name}" {state}{f" on {lock}" if lock else ""}\n{stack}')
    return "\n".join(dumped)
