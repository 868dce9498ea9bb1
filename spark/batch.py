"""One micro-batch, start to end: read → decode → dead letters → Cassandra → progress → consumer-group commit.

`BatchProcessor.process` is the stream's foreachBatch function. Every step
that talks to a service runs under the FaultRider (spark/faults.py): while
Cassandra, the registry or Kafka is away the step is retried with backoff,
and nothing after it runs, so no offset moves past a record that was not
written or dead-lettered. Every step can run twice harmlessly: rows are
upserts, dead letters carry their source position, progress replaces a
replayed batch's counts, and the group commit sets, not adds, offsets.

A record never stops the batch: decode gives every bad record a reason
(spark/decode.py), and a row Cassandra refuses is split off and
dead-lettered with stage `write` (spark/write_split.py). What does stop
it (a service away for too long, a table that cannot hold the reader
schema, an unexpected error) is raised, after `failure` is set so the
entry point can say which batch and offsets it stopped at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import dead_letter
from core.settings import Settings
from spark.decode import dead_rows, decode, good_rows, with_header
from spark.faults import CASSANDRA, KAFKA, REGISTRY, FaultRider
from spark.progress import next_progress, read_progress, write_progress
from spark.registry import SchemaBook, SchemaSnapshot
from spark.sink import CassandraSink, DeadLetterSink
from spark.write_split import Refused, write_or_split

log = logging.getLogger("spark.stream_job")


@dataclass(frozen=True)
class BatchSummary:
    """What the header pass learned about a batch: size, schema ids, where each partition starts and ends."""

    records_in: int
    schema_ids: list[int]
    start_offsets: dict[str, dict[str, int]]  # first offset in the batch per partition
    end_offsets: dict[str, dict[str, int]]  # next offset to read per partition (Kafka's committed-offset convention)


def summarize(framed: DataFrame) -> BatchSummary:
    """One small aggregation: counts, valid schema ids, first and next offsets per partition."""
    rows = framed.groupBy("topic", "partition", "schema_id").agg(
        F.count(F.lit(1)).alias("records"), F.min("offset").alias("first_offset"), F.max("offset").alias("last_offset")
    ).collect()
    starts: dict[str, dict[str, int]] = {}
    ends: dict[str, dict[str, int]] = {}
    for row in rows:
        part = str(row.partition)
        first = starts.setdefault(row.topic, {})
        first[part] = min(first.get(part, row.first_offset), row.first_offset)
        end = ends.setdefault(row.topic, {})
        end[part] = max(end.get(part, 0), row.last_offset + 1)
    ids = sorted({row.schema_id for row in rows if row.schema_id is not None})
    return BatchSummary(sum(row.records for row in rows), ids, starts, ends)


@dataclass
class Failure:
    """Why and where the last batch stopped the query."""

    error: BaseException
    batch_id: int
    offsets: dict[str, dict[str, int]]


class BatchProcessor:
    """The foreachBatch function and what it needs; `failure` says why a batch stopped the query."""

    def __init__(self, spark: SparkSession, settings: Settings, book: SchemaBook, rider: FaultRider,
                 progress_file: Path, query_name: str, commit: Callable[[dict[str, dict[str, int]]], None]):
        self.spark = spark
        self.settings = settings
        self.book = book
        self.rider = rider
        self.sink = CassandraSink(settings, spark)
        self.dead_letters = DeadLetterSink(settings)
        self.progress_file = progress_file
        self.query_name = query_name
        self.commit = commit
        self.checked_reader_id: int | None = None  # the reader schema the table was last checked against
        self.failure: Failure | None = None
        self.last_batch_done = 0.0  # monotonic time the last batch finished, for the query restart bound

    def process(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch, write rows and dead letters, record progress, commit offsets; raise to stop the query."""
        started = time.monotonic()
        framed = with_header(batch).persist(StorageLevel.MEMORY_AND_DISK)
        decoded, refused, summary = None, None, None
        try:
            summary = self._step(KAFKA, batch_id, "reading the batch", lambda: summarize(framed))
            counts = {"decoded": 0, "rows_written": 0, "dead_lettered": 0, "dead_lettered_at_write": 0}
            if summary.records_in:
                snapshot = self._step(REGISTRY, batch_id, "looking up schemas", lambda: self._schemas(summary.schema_ids))
                decoded = decode(framed, snapshot, self.settings.schema_registry_url).persist(StorageLevel.MEMORY_AND_DISK)
                ok, dead, keys = self._step(KAFKA, batch_id, "decoding", lambda: count(decoded))
                if dead:
                    self._step(KAFKA, batch_id, "dead-lettering", lambda: self.dead_letters.write(dead_rows(decoded)))
                if ok:
                    refused = self._step(CASSANDRA, batch_id, "writing rows",
                                         lambda: write_or_split(self.spark, self.sink, good_rows(decoded), decoded, unique_keys=keys == ok))
                if refused is not None:
                    self._step(KAFKA, batch_id, "dead-lettering refused rows",
                               lambda: self.dead_letters.write(refused.rows, dead_letter.WRITE))
                late = refused.count if refused else 0
                counts = {"decoded": ok, "rows_written": keys - late, "dead_lettered": dead + late, "dead_lettered_at_write": late}
            self._record(batch_id, summary, counts, time.monotonic() - started)
            self._step(KAFKA, batch_id, "committing offsets to the consumer group", lambda: self.commit(summary.end_offsets))
            self.last_batch_done = time.monotonic()
        except BaseException as exc:
            self.failure = Failure(exc, batch_id, summary.start_offsets if summary else {})
            raise
        finally:
            for cached in (framed, decoded):
                if cached is not None:
                    cached.unpersist()
            if refused is not None:
                refused.release()

    def _step(self, service: str, batch_id: int, what: str, action: Callable[[], Any]) -> Any:
        return self.rider.call(service, action, f"batch {batch_id}: {what}")

    def _schemas(self, schema_ids: list[int]) -> SchemaSnapshot:
        """The batch's schemas; a new reader is checked against the table before anything is decoded with it."""
        snapshot, _ = self.book.update(schema_ids)
        if snapshot.reader.id != self.checked_reader_id:
            self.sink.check_columns(snapshot.reader)
            self.checked_reader_id = snapshot.reader.id
        return snapshot

    def _record(self, batch_id: int, summary: BatchSummary, counts: dict[str, int], seconds: float) -> None:
        """One log line and the progress file per batch."""
        log.info(
            "batch %d: %d records in, %d rows written (%d decoded), %d dead-lettered (%d refused by Cassandra), "
            "schema ids %s, %.2f s",
            batch_id, summary.records_in, counts["rows_written"], counts["decoded"], counts["dead_lettered"],
            counts["dead_lettered_at_write"], summary.schema_ids, seconds,
        )
        batch = {"records_in": summary.records_in, **counts, "schema_ids": summary.schema_ids,
                 "duration_seconds": round(seconds, 3)}
        reader_id = self.book.reader.id if self.book.reader else None
        record = next_progress(read_progress(self.progress_file), self.query_name, batch_id, batch, summary.end_offsets, reader_id)
        write_progress(self.progress_file, record)


def count(decoded: DataFrame) -> tuple[int, int, int]:
    """(decoded, dead-lettered, distinct keys to write) in one pass over the cached batch."""
    good = F.col("reason").isNull()
    row = decoded.agg(
        F.count(F.when(good, 1)).alias("ok"),
        F.count(F.when(~good, 1)).alias("dead"),
        F.countDistinct(F.when(good, F.col("user.id"))).alias("keys"),
    ).first()
    return row.ok, row.dead, row.keys
