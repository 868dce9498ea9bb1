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

from pyspark import InheritableThread, StorageLevel
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
    """What one pass over the decoded batch learned: size, schema ids, good rows, distinct ids, offsets."""

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


def summarize(decoded: DataFrame) -> BatchSummary:
    """One Spark job: per partition and schema id the counts and offsets, and the distinct ids of the good rows.

    A rollup, so the whole batch's distinct count (the grand-total row) comes
    out of the same job as the per-group rows (the finest grouping level);
    the rows in between are ignored. The good rows' ids equal their Kafka
    keys (decode dead-letters any other), so the key is counted.
    """
    good = F.col("reason").isNull()
    rows = decoded.rollup("topic", "partition", "schema_id").agg(
        F.grouping_id().alias("level"),
        F.count(F.lit(1)).alias("records"), F.count(F.when(good, 1)).alias("good"),
        F.min("offset").alias("first_offset"), F.max("offset").alias("last_offset"),
        F.countDistinct(F.when(good, F.col("key"))).alias("distinct_ids"),
    ).where("level = 0 or level = 7").collect()
    groups = [row for row in rows if row.level == 0]
    starts: dict[str, dict[str, int]] = {}
    ends: dict[str, dict[str, int]] = {}
    for row in groups:
        part = str(row.partition)
        first = starts.setdefault(row.topic, {})
        first[part] = min(first.get(part, row.first_offset), row.first_offset)
        end = ends.setdefault(row.topic, {})
        end[part] = max(end.get(part, 0), row.last_offset + 1)
    ids = sorted({row.schema_id for row in groups if row.schema_id is not None})
    records, good_rows_in = sum(row.records for row in groups), sum(row.good for row in groups)
    distinct = next((row.distinct_ids for row in rows if row.level == 7), 0)
    return BatchSummary(records, ids, starts, ends, good_rows_in, records - good_rows_in, distinct)


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
        self.summary_of_failed_write: BatchSummary | None = None

    def process(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch, write rows and dead letters, record progress, commit offsets; raise to stop the query.

        The batch is decoded with the schemas the book already has and cached;
        the Cassandra write of its good rows and the summary (counts, offsets,
        schema ids, distinct ids) run at the same time, two Spark jobs on the
        one cache. Only when the summary says so is more done: an id the book
        has not seen asks the registry and the batch is decoded and written
        again; an id that came twice is written again, newest record winning.
        """
        started = time.monotonic()
        framed = with_header(batch)
        decoded, refused, summary = None, None, None
        try:
            snapshot = self.book.known() if self.book.reader is not None else self._step(
                REGISTRY, batch_id, "looking up the reader schema", lambda: self._schemas([]))
            decoded = self._decode(framed, snapshot)
            summary, refused = self._summarize_while_writing(batch_id, decoded)
            if not self.book.covers(summary.schema_ids):
                # Records with a new id were neither written nor dead-lettered above: decode the batch again.
                snapshot = self._step(REGISTRY, batch_id, "looking up schemas", lambda: self._schemas(summary.schema_ids))
                refused = release(refused)
                decoded.unpersist()
                decoded = self._decode(framed, snapshot)
                summary = self._step(KAFKA, batch_id, "decoding with the new schemas", lambda: summarize(decoded))
                refused = self._write(batch_id, decoded, unique_ids=summary.unique_ids)
            elif not summary.unique_ids:
                # An id came twice: the first write may have kept either record; the newest by position must win.
                refused = release(refused)
                refused = self._write(batch_id, decoded, unique_ids=False)
            if summary.dead:
                self._step(KAFKA, batch_id, "dead-lettering", lambda: self.dead_letters.write(dead_rows(decoded)))
            if refused is not None:
                self._step(KAFKA, batch_id, "dead-lettering refused rows",
                           lambda: self.dead_letters.write(refused.rows, dead_letter.WRITE))
            late = refused.count if refused else 0
            counts = {"decoded": summary.decoded, "rows_written": summary.distinct_ids - late,
                      "dead_lettered": summary.dead + late, "dead_lettered_at_write": late}
            self._record(batch_id, summary, counts, time.monotonic() - started)
            self._step(KAFKA, batch_id, "committing offsets to the consumer group", lambda: self.commit(summary.end_offsets))
            self.last_batch_done = time.monotonic()
        except BaseException as exc:
            summary = summary or self.summary_of_failed_write  # a failed write still knows where its batch starts
            self.failure = Failure(exc, batch_id, summary.start_offsets if summary else {})
            raise
        finally:
            if decoded is not None:
                decoded.unpersist()
            if refused is not None:
                refused.release()

    def _summarize_while_writing(self, batch_id: int, decoded: DataFrame) -> tuple[BatchSummary, Refused | None]:
        """The summary job in a second thread while this one writes every good row as it is (no dedupe).

        Why at once: each is a small Spark job whose time is mostly fixed cost
        (scheduling, planning, the connector's table lookup), and the batch's
        freshness is the sum of them; side by side, the cores overlap them.
        The cache is filled once: a partition one job is computing is waited
        for by the other (Spark's block locks). Writing before the counts are
        known is safe: rows are upserts, and process() rewrites the batch when
        the summary finds a new schema id or an id twice.
        """
        outcome: dict[str, Any] = {}
        self.summary_of_failed_write = None

        def summary_job() -> None:
            try:
                outcome["summary"] = self._step(KAFKA, batch_id, "reading and decoding the batch", lambda: summarize(decoded))
            except BaseException as exc:  # handed to the batch's thread below, which raises it
                outcome["error"] = exc

        thread = InheritableThread(target=summary_job, name=f"batch-{batch_id}-summary")  # keeps Spark's local properties
        thread.start()
        refused = None
        try:
            refused = self._write(batch_id, decoded, unique_ids=True)
        except BaseException:
            thread.join()
            self.summary_of_failed_write = outcome.get("summary")
            raise
        thread.join()
        if "error" in outcome:
            release(refused)
            raise outcome["error"]
        return outcome["summary"], refused

    def _write(self, batch_id: int, decoded: DataFrame, unique_ids: bool) -> Refused | None:
        """Upsert the good rows (deduplicated unless `unique_ids`); the rows Cassandra refused, if any."""
        return self._step(CASSANDRA, batch_id, "writing rows", lambda: write_or_split(
            self.spark, self.sink, good_rows(decoded), decoded, unique_keys=unique_ids))

    def _decode(self, framed: DataFrame, snapshot: SchemaSnapshot) -> DataFrame:
        """The batch decoded with `snapshot`, cached: the summary fills the cache, the writes read it."""
        return decode(framed, snapshot, self.settings.schema_registry_url).persist(StorageLevel.MEMORY_AND_DISK)

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


def release(refused: Refused | None) -> None:
    """Free what a write's refused rows keep cached; None, to assign back."""
    if refused is not None:
        refused.release()
    return None
