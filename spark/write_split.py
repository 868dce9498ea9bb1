"""Write a batch's rows to Cassandra; when Cassandra refuses some, find them by splitting and set them aside.

One row Cassandra (or the connector) cannot take, say a value over the
native protocol's 16 MiB message limit, fails the whole connector write,
and would fail it again after every restart: a poison pill. So when the
write fails on a row (a task failed, and not because Cassandra is away,
see spark/faults.py), the rows are numbered in Kafka order and written again
in halves, and every half that fails is halved again down to single rows.
Those are returned with the connector's error as the reason, to be
dead-lettered with stage `write`; every other row is written. A batch with k
refused rows among n costs about 2·k·log2(n) extra Spark jobs, and the happy
path costs nothing extra.

Upserts make the re-writes harmless: halves that were written in the failed
attempt are simply written again with the same values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark.faults import CASSANDRA, describe, error_text, transient_service
from spark.sink import CassandraSink, latest_per_key

log = logging.getLogger(__name__)

ROW_NUMBER = "_row"
# A task failed for a reason no single row causes: splitting would dead-letter good rows.
NOT_A_ROW_MARKERS = (
    "AuthenticationException", "UnauthorizedException", "OutOfMemoryError", "ExecutorLostFailure",
    "InvalidKeyspaceException", "unconfigured table",
)


def refused_by_a_row(exc: BaseException) -> bool:
    """True when a failed write may be one row's fault: a write task failed, and not because Cassandra is away.

    Failures before any task ran (the table or a column is missing, no
    connection) concern every row alike and are never split.
    """
    if transient_service(exc, CASSANDRA) is not None:
        return False
    text = error_text(exc)
    return "Job aborted due to stage failure" in text and not any(marker in text for marker in NOT_A_ROW_MARKERS)


@dataclass
class Refused:
    """Rows Cassandra refused, in the dead-letter sink's shape; `release()` frees the cached batch afterwards."""

    rows: DataFrame
    count: int
    _cached: DataFrame

    def release(self) -> None:
        self._cached.unpersist()


def write_or_split(spark: SparkSession, sink: CassandraSink, rows: DataFrame, consumed: DataFrame,
                   unique_keys: bool = False) -> Refused | None:
    """Upsert one row per id; None when everything was written, else the refused rows (all others written).

    `rows` come from decode.good_rows; `consumed` are the batch's Kafka
    records (topic, partition, offset, key, value, headers), from which a
    refused row's original bytes are taken for its dead letter. `unique_keys`
    (the caller counted as many ids as rows) skips the dedupe's shuffle.
    """
    latest = rows if unique_keys else latest_per_key(rows)
    try:
        sink.save(latest)
        return None
    except Exception as exc:  # Py4JJavaError from the connector: split if one row may be the cause, else raise
        if not refused_by_a_row(exc):
            raise
        log.warning("Cassandra refused the batch's write, splitting it to find the rows: %s", describe(exc))
        first_error = exc
    # Window without partitions: one numbering in Kafka order, computed once and cached (failure path only).
    numbered = latest.withColumn(ROW_NUMBER, F.row_number().over(Window.orderBy("kafka_partition", "kafka_offset")) - 1)
    numbered = numbered.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        refused: dict[int, str] = {}
        _split(sink, numbered, 0, numbered.count(), first_error, refused)
    except BaseException:
        numbered.unpersist()
        raise
    if not refused:  # every half went in on its own: the first failure was not a row's
        numbered.unpersist()
        return None
    log.warning("Cassandra refused %d row(s); they go to the dead-letter topic with stage write", len(refused))
    reasons = spark.createDataFrame(sorted(refused.items()), f"{ROW_NUMBER} long, reason string")
    refused_rows = numbered.join(F.broadcast(reasons), ROW_NUMBER)
    return Refused(_as_dead_letters(refused_rows, consumed), len(refused), numbered)


def _split(sink: CassandraSink, numbered: DataFrame, low: int, high: int, error: BaseException,
           refused: dict[int, str]) -> None:
    """Rows [low, high) failed with `error`: write each half, halving again what fails, down to single rows."""
    if high - low == 1:
        refused[low] = f"Cassandra refused the row: {describe(error, limit=500)}"
        return
    middle = (low + high) // 2
    for start, end in ((low, middle), (middle, high)):
        try:
            sink.save(numbered.where((F.col(ROW_NUMBER) >= start) & (F.col(ROW_NUMBER) < end)))
        except Exception as exc:  # same rule as the whole write: only a row's failure is split further
            if not refused_by_a_row(exc):
                raise
            _split(sink, numbered, start, end, exc, refused)


def _as_dead_letters(refused: DataFrame, consumed: DataFrame) -> DataFrame:
    """The columns DeadLetterSink reads: each refused row's consumed record, its schema id and the reason."""
    positions = refused.select(
        F.col("kafka_topic").alias("topic"), F.col("kafka_partition").alias("partition"),
        F.col("kafka_offset").alias("offset"), "schema_id", "reason",
    )
    records = consumed.select("topic", "partition", "offset", "key", "value", "headers")
    return records.join(F.broadcast(positions), ["topic", "partition", "offset"])
