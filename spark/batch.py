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

from core import dead_letter
from core.settings import Settings
from spark.decode import Decoder, dead_rows
from spark.faults import CASSANDRA, KAFKA, REGISTRY, FaultRider, run_bounded
from spark.progress import next_progress, read_progress, write_progress
from spark.registry import SchemaBook, SchemaSnapshot
from spark.sink import CassandraSink, DeadLetterSink
from spark.summary import BatchSummary, ObservedBatch, ObservedColumns, ObservedCountsLate, summarize, summarize_consumed
from spark.write_split import Refused, write_or_split

log = logging.getLogger("spark.stream_job")
# How long the count of a batch whose observed counts came late may take (seconds when Spark is well).
LATE_COUNT_JOB_SECONDS = 180.0


@dataclass
class Failure:
    """Why and where the last batch stopped the query."""

    error: BaseException
    batch_id: int
    offsets: dict[str, dict[str, int]]


class BatchProcessor:
    """The foreachBatch function and what it needs; `failure` says why a batch stopped the query.

    `capped_batches`: the source caps a batch's records (maxOffsetsPerTrigger),
    so the write may also observe its keys' hashes (see ObservedColumns).
    """

    def __init__(self, spark: SparkSession, settings: Settings, book: SchemaBook, rider: FaultRider,
                 progress_file: Path, query_name: str, commit: Callable[[dict[str, dict[str, int]]], None],
                 capped_batches: bool = False):
        self.spark = spark
        self.settings = settings
        self.book = book
        self.rider = rider
        self.sink = CassandraSink(settings, spark)
        self.dead_letters = DeadLetterSink(settings)
        self.progress_file = progress_file
        self.query_name = query_name
        self.commit = commit
        self.decoder: Decoder | None = None  # the last snapshot's decode columns, kept while it stays the same
        self.checked_reader_id: int | None = None  # the reader schema the table was last checked against
        self.capped_batches = capped_batches
        self.partitions: set[tuple[str, int]] = set()  # (topic, partition) seen in a batch: their offsets are observed
        self.observed_columns: ObservedColumns | None = None
        self.failure: Failure | None = None
        self.last_batch_done = 0.0  # monotonic time the last batch finished, for the query restart bound

    def process(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch, write rows and dead letters, record progress, commit offsets; raise to stop the query.

        Usually one Spark job reads, decodes and writes the batch's good rows,
        and learns as it goes (observed metrics) what the batch held: good and
        dead records, schema ids, offsets, and whether a key came twice. Only
        when that says so is more done, from a decoded and cached batch: an id
        the book has not seen asks the registry and the batch is decoded and
        written again; a key that came twice is written again, newest record
        winning.
        """
        started = time.monotonic()
        cached, refused, summary = None, None, None
        try:
            snapshot = self.book.known() if self.book.reader is not None else self._step(
                REGISTRY, batch_id, "looking up the reader schema", lambda: self._schemas([]))
            decoder = self._decoder(snapshot)
            framed = decoder.with_header(batch)
            observed = ObservedBatch(decoder.decode(framed), batch_id, self._observed_columns())
            decoded = observed.frame
            refused, in_one_go = self._write(batch_id, decoder.good_rows(decoded), decoded, unique_ids=True)
            summary, keys_repeat = self._summary_of_write(batch_id, observed, framed, in_one_go)
            new_ids = not self.book.covers(summary.schema_ids)
            if new_ids or keys_repeat:
                # Records with a new id were neither written nor dead-lettered above; a key twice may
                # have left either record in Cassandra: decode the batch again (asking the registry for
                # new ids), count it exactly and write it again, the newest record per id winning.
                refused = release(refused)
                if new_ids:
                    ids = summary.schema_ids
                    snapshot = self._step(REGISTRY, batch_id, "looking up schemas", lambda: self._schemas(ids))
                    decoder = self._decoder(snapshot)
                cached = decoder.decode(framed).persist(StorageLevel.MEMORY_AND_DISK)
                summary = self._step(KAFKA, batch_id, "decoding the batch again", lambda: summarize(cached))
                refused, _ = self._write(batch_id, decoder.good_rows(cached), cached, unique_ids=summary.unique_ids)
                decoded = cached
            if summary.dead:
                self._step(KAFKA, batch_id, "dead-lettering", lambda: self.dead_letters.write(dead_rows(decoded)))
            if refused is not None:
                self._step(KAFKA, batch_id, "dead-lettering refused rows",
                           lambda: self.dead_letters.write(refused.rows, dead_letter.WRITE))
            late = refused.count if refused else 0
            counts_out = {"decoded": summary.decoded, "rows_written": summary.distinct_ids - late,
                          "dead_lettered": summary.dead + late, "dead_lettered_at_write": late}
            self._record(batch_id, summary, counts_out, time.monotonic() - started)
            self._step(KAFKA, batch_id, "committing offsets to the consumer group", lambda: self.commit(summary.end_offsets))
            self.last_batch_done = time.monotonic()
        except BaseException as exc:
            self.failure = Failure(exc, batch_id, summary.start_offsets if summary else self._resume_offsets())
            raise
        finally:
            if cached is not None:
                cached.unpersist()
            if refused is not None:
                refused.release()

    def _summary_of_write(self, batch_id: int, observed: ObservedBatch, framed: DataFrame,
                          in_one_go: bool) -> tuple[BatchSummary, bool]:
        """What the write learned of the batch, and whether a key came twice (then the distinct ids are not known yet).

        A write that needed a retry or a split leaves partial observed counts
        (see ObservedBatch), and counts that came late are none: the batch is
        then counted again, decoding it once more. Records of a partition the
        observed columns did not list (the first batch, partitions added) or
        an uncapped batch take a job over the Kafka columns and headers for
        their offsets and keys.
        """
        if in_one_go:
            try:
                consumed, good, dead = observed.get()
            except ObservedCountsLate as late:
                # The rows are written; only their counts are missing: a job of its own counts them, bounded,
                # since a driver that held the counts back may hold that job too.
                log.warning("batch %d: %s", batch_id, late)
                summary = self._step(KAFKA, batch_id, "counting the batch after its counts came late", lambda: run_bounded(
                    lambda: summarize(observed.frame), LATE_COUNT_JOB_SECONDS, f"batch {batch_id}'s count"))
                return summary, not summary.unique_ids
        if not in_one_go:
            summary = self._step(KAFKA, batch_id, "counting the batch again", lambda: summarize(observed.frame))
            return summary, not summary.unique_ids
        if consumed is None:
            consumed = self._step(KAFKA, batch_id, "reading the batch's offsets and headers", lambda: summarize_consumed(framed))
        self.partitions |= {(topic, int(part)) for topic, parts in consumed.end_offsets.items() for part in parts}
        return consumed.summary(good, dead), consumed.keys_repeat

    def _observed_columns(self) -> ObservedColumns:
        """The observed metrics for the partitions seen so far, kept from batch to batch while they stay the same."""
        if self.observed_columns is None or self.observed_columns.partitions != self.partitions:
            self.observed_columns = ObservedColumns(frozenset(self.partitions), check_keys=self.capped_batches)
        return self.observed_columns

    def _write(self, batch_id: int, rows: DataFrame, decoded: DataFrame, unique_ids: bool) -> tuple[Refused | None, bool]:
        """Upsert `rows`, decoded's good rows (deduplicated unless `unique_ids`): the rows Cassandra refused, if any,
        and whether the write went in at its first attempt (one connector write: no retry, no split)."""
        saves = self.sink.saves
        refused = self._step(CASSANDRA, batch_id, "writing rows", lambda: write_or_split(
            self.spark, self.sink, rows, decoded, unique_keys=unique_ids))
        return refused, self.sink.saves == saves + 1

    def _resume_offsets(self) -> dict[str, dict[str, int]]:
        """Where a batch that failed before it was summarized starts: the last finished batch's end offsets."""
        return (read_progress(self.progress_file) or {}).get("end_offsets") or {}

    def _decoder(self, snapshot: SchemaSnapshot) -> Decoder:
        """The decoder of `snapshot`, kept from batch to batch while the snapshot stays the same."""
        if self.decoder is None or self.decoder.snapshot != snapshot:
            self.decoder = Decoder(snapshot, self.settings.schema_registry_url)
        return self.decoder

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
