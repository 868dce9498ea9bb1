"""Kafka -> decode each record with its own writer schema -> Cassandra; poison records -> dead-letter topic.

Reads Confluent-framed Avro users from the `users` topic, looks up each
record's writer schema in the Schema Registry by the id in its header,
decodes it into the reader schema with from_avro, and upserts the rows into
Cassandra by id. A record that cannot be decoded goes to the dead-letter
topic with its original bytes and the reason in its headers
(core/dead_letter.py); the query keeps running.

Usage:
    python -m spark.stream_job [--master URL] [--trigger INTERVAL | --once | --available-now]
                               [--starting-offsets earliest|latest|JSON]
                               [--max-offsets-per-trigger N] [--checkpoint DIR]

    python -m spark.stream_job                       # runs until stopped, one batch every SPARK_TRIGGER_INTERVAL
    python -m spark.stream_job --available-now       # drains what the topic holds now, then exits
    python -m spark.stream_job --master spark://127.0.0.1:7077 --available-now

The same with spark-submit, from the repository root after `make setup`
(under spark-submit the JVM starts first, so jars and the Avro size cap
must be passed on the command line):

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit \\
      --master 'local[2]' \\
      --jars "$(ls .stack/jars/spark/*.jar | paste -sd, -)" \\
      --driver-java-options "-Dorg.apache.avro.limits.string.maxLength=8388608 -Dorg.apache.avro.limits.bytes.maxLength=8388608 -Dorg.apache.avro.limits.collectionItems.maxLength=8388608" \\
      spark/stream_job.py --available-now

Exit status: 0 when --once/--available-now has drained the topic; 1 when a
service is down or not ready at start, or the query fails (one line on stderr
says which and what to do); 130 when interrupted.

Everything else (Kafka, registry, Cassandra, topics, checkpoint) comes from
the environment: see core/settings.py. Before the first run the stack
must be up with the schema registered and the table created:
`make up`, `make register`, `make cassandra-schema`.

Progress: Spark's offsets live in the checkpoint (SPARK_CHECKPOINT_DIR), not
in a consumer group. After every batch the job also writes
<checkpoint>/../<name>.progress.json (counts, end offsets per partition),
which `make status` reads; each batch is logged as one line.

Schema evolution: ALTER TABLE first
(`python -m core.cassandra_schema --add-columns-for schemas/new.avsc`),
then register the new version. The job notices the new schema id at the
first record written with it, re-reads the subject's latest version as its
reader, and checks the table can hold it; if not, it stops with the ALTER
TABLE to run, and the batch is decoded again after the restart.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    # Run as a file (spark-submit spark/stream_job.py): import the repository's packages, and keep
    # spark/ itself off sys.path so its modules cannot shadow top-level ones.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from pyspark import StorageLevel  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.errors import StreamingQueryException  # noqa: E402
from pyspark.sql.streaming import StreamingQuery  # noqa: E402

from core.cassandra_schema import CassandraUnavailable  # noqa: E402
from core.settings import Settings, load_settings  # noqa: E402
from core.topics import TopicError, ensure_pipeline_topics  # noqa: E402
from spark.decode import avro_compatibility, dead_rows, decode, good_rows, with_header  # noqa: E402
from spark.kafka_options import kafka_options  # noqa: E402
from spark.progress import next_progress, progress_path, read_progress, write_progress  # noqa: E402
from core.subjects import user_subject  # noqa: E402
from spark.registry import RegistryClient, RegistryError, SchemaBook  # noqa: E402
from spark.session import MissingJarsError, build_spark_session  # noqa: E402
from spark.sink import CassandraSink, DeadLetterSink, SchemaMismatchError  # noqa: E402

log = logging.getLogger("spark.stream_job")


@dataclass(frozen=True)
class JobOptions:
    """How the query runs; the CLI flags, or what tests pass directly."""

    trigger: str = "processing"  # "processing", "available_now" or "once"
    interval: str = "5 seconds"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    checkpoint: str = ""
    query_name: str = "users-to-cassandra"

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> JobOptions:
        base = cls(
            interval=settings.spark_trigger_interval,
            starting_offsets=settings.spark_starting_offsets,
            max_offsets_per_trigger=settings.spark_max_offsets_per_trigger,
            checkpoint=settings.spark_checkpoint_dir,
            query_name=f"{settings.users_topic}-to-cassandra",
        )
        return cls(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass(frozen=True)
class BatchSummary:
    """What the header pass learned about a batch: size, schema ids, how far each partition got."""

    records_in: int
    schema_ids: list[int]
    end_offsets: dict[str, dict[str, int]]


def summarize(framed: DataFrame) -> BatchSummary:
    """One small aggregation: counts, valid schema ids and next offsets per partition."""
    rows = framed.groupBy("topic", "partition", "schema_id").agg(
        F.count(F.lit(1)).alias("records"), F.max("offset").alias("last_offset")
    ).collect()
    end_offsets: dict[str, dict[str, int]] = {}
    for row in rows:
        parts = end_offsets.setdefault(row.topic, {})
        parts[str(row.partition)] = max(parts.get(str(row.partition), 0), row.last_offset + 1)
    ids = sorted({row.schema_id for row in rows if row.schema_id is not None})
    return BatchSummary(sum(row.records for row in rows), ids, end_offsets)


class UserStreamJob:
    """The stream's wiring: schema book, sinks and progress file around one foreachBatch function."""

    def __init__(self, spark: SparkSession, settings: Settings, options: JobOptions):
        self.spark = spark
        self.settings = settings
        self.options = options
        self.book = SchemaBook(
            client=RegistryClient.from_settings(settings),
            subject=user_subject(settings),
            reader_version=settings.user_schema_version,
            compatibility=avro_compatibility(spark),
        )
        self.sink = CassandraSink(settings, spark)
        self.dead_letters = DeadLetterSink(settings)
        self.progress_file = progress_path(options.checkpoint)

    def prepare(self) -> None:
        """Fail before the first batch if the reader schema or the table is not ready; create missing topics.

        Spark's Kafka source fails on a topic that does not exist yet, and a
        dead-letter write to a missing topic blocks, then fails the batch.
        """
        self.book.load_reader()
        self.sink.check_columns(self.book.reader)
        created = ensure_pipeline_topics(self.settings)
        if created:
            log.info("created topics %s", ", ".join(created))

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        """Decode one micro-batch, write good rows and dead letters, record progress; raise to stop the query."""
        started = time.monotonic()
        framed = with_header(batch).persist(StorageLevel.MEMORY_AND_DISK)
        decoded = None
        try:
            summary = summarize(framed)
            ok = dead = written = 0
            if summary.records_in:
                snapshot, reader_changed = self.book.update(summary.schema_ids)
                if reader_changed:
                    self.sink.check_columns(snapshot.reader)
                decoded = decode(framed, snapshot, self.settings.schema_registry_url).persist(StorageLevel.MEMORY_AND_DISK)
                ok, dead, written = self._count(decoded)
                if dead:
                    self.dead_letters.write(dead_rows(decoded))
                if ok:
                    self.sink.write(good_rows(decoded))
            self._record(batch_id, summary, ok, dead, written, time.monotonic() - started)
        finally:
            framed.unpersist()
            if decoded is not None:
                decoded.unpersist()

    @staticmethod
    def _count(decoded: DataFrame) -> tuple[int, int, int]:
        """(decoded, dead-lettered, distinct keys to write) in one pass over the cached batch."""
        good = F.col("reason").isNull()
        row = decoded.agg(
            F.count(F.when(good, 1)).alias("ok"),
            F.count(F.when(~good, 1)).alias("dead"),
            F.countDistinct(F.when(good, F.col("user.id"))).alias("keys"),
        ).first()
        return row.ok, row.dead, row.keys

    def _record(self, batch_id: int, summary: BatchSummary, ok: int, dead: int, written: int, seconds: float) -> None:
        """One log line and the progress file per batch."""
        log.info(
            "batch %d: %d records in, %d rows written (%d decoded), %d dead-lettered, schema ids %s, %.2f s",
            batch_id, summary.records_in, written, ok, dead, summary.schema_ids, seconds,
        )
        batch = {
            "records_in": summary.records_in,
            "decoded": ok,
            "rows_written": written,
            "dead_lettered": dead,
            "schema_ids": summary.schema_ids,
            "duration_seconds": round(seconds, 3),
        }
        reader_id = self.book.reader.id if self.book.reader else None
        record = next_progress(read_progress(self.progress_file), self.options.query_name, batch_id, batch, summary.end_offsets, reader_id)
        write_progress(self.progress_file, record)

    def start(self) -> StreamingQuery:
        """Start the streaming query (checks first); the caller awaits or stops it."""
        self.prepare()
        opts = self.options
        source = (
            self.spark.readStream.format("kafka")
            .options(**kafka_options(self.settings))
            .option("subscribe", self.settings.users_topic)
            .option("startingOffsets", opts.starting_offsets)
            .option("includeHeaders", "true")
        )
        if opts.max_offsets_per_trigger:
            source = source.option("maxOffsetsPerTrigger", str(opts.max_offsets_per_trigger))
        writer = (
            source.load()
            .writeStream.queryName(opts.query_name)
            .foreachBatch(self.process_batch)
            .option("checkpointLocation", opts.checkpoint)
        )
        if opts.trigger == "available_now":
            writer = writer.trigger(availableNow=True)
        elif opts.trigger == "once":
            writer = writer.trigger(once=True)
        else:
            writer = writer.trigger(processingTime=opts.interval)
        query = writer.start()
        log.info(
            "query %s started: topic %s -> %s.%s, dead letters -> %s, checkpoint %s, trigger %s",
            opts.query_name, self.settings.users_topic, self.settings.cassandra_keyspace, self.settings.cassandra_table,
            self.settings.dead_letter_topic, opts.checkpoint, opts.interval if opts.trigger == "processing" else opts.trigger,
        )
        return query


def main(args: argparse.Namespace) -> int:
    """Build the session, start the query, wait for it; a failed query raises with Spark's reason."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one line per callback otherwise
    settings = load_settings()
    trigger = "available_now" if args.available_now else "once" if args.once else "processing"
    options = JobOptions.from_settings(
        settings,
        trigger=trigger,
        interval=args.trigger,
        starting_offsets=args.starting_offsets,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        checkpoint=args.checkpoint,
    )
    try:
        spark = build_spark_session(settings, options.query_name, master=args.master)
    except MissingJarsError as exc:
        return fail(exc)
    spark.sparkContext.setLogLevel("WARN")
    try:
        query = UserStreamJob(spark, settings, options).start()
        query.awaitTermination()
    except STARTUP_ERRORS as exc:
        return fail(exc)
    except StreamingQueryException as exc:
        return fail(f"query {options.query_name} failed; its last batch was not committed and is decoded again "
                    f"on the next start. Spark's reason:\n{exc}")
    except KeyboardInterrupt:
        log.info("interrupted: stopping query %s (the current batch is replayed on the next start)", options.query_name)
        query.stop()
        return 130
    finally:
        spark.stop()
    return 0


# What a start can fail on before any record is read (a service down, the schema or table not
# ready): each message already names the service and what to do, so the job prints it and exits 1.
STARTUP_ERRORS = (RegistryError, CassandraUnavailable, SchemaMismatchError, TopicError)


def fail(error: object) -> int:
    """The message on stderr, without a Python traceback that would bury it; exit status 1."""
    print(f"spark.stream_job: {error}", file=sys.stderr)
    return 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m spark.stream_job",
        description="Kafka (Confluent Avro) -> Spark from_avro per schema id -> Cassandra, poison records -> dead-letter topic.",
    )
    parser.add_argument("--master", help="local[N] or spark://host:7077 (default: SPARK_MASTER)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--trigger", metavar="INTERVAL", help='micro-batch interval, e.g. "5 seconds" (default: SPARK_TRIGGER_INTERVAL)')
    when.add_argument("--once", action="store_true", help="one batch with everything available, then exit")
    when.add_argument("--available-now", action="store_true", help="drain everything available in batches, then exit")
    parser.add_argument("--starting-offsets", help="earliest, latest or Spark's JSON; only for a new checkpoint (default: SPARK_STARTING_OFFSETS)")
    parser.add_argument("--max-offsets-per-trigger", type=int, metavar="N", help="cap records per batch (default: SPARK_MAX_OFFSETS_PER_TRIGGER)")
    parser.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (default: SPARK_CHECKPOINT_DIR)")
    args = parser.parse_args(argv)
    if args.max_offsets_per_trigger is not None and args.max_offsets_per_trigger < 1:
        parser.error("--max-offsets-per-trigger must be >= 1")
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
