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

The same with spark-submit, from the repository root after `make setup`,
through the thin entry file jobs/stream_job.py (spark-submit runs a file; this
module stays an ordinary module of the spark package). Under spark-submit the
JVM starts first, so jars and the Avro size cap are passed on the command line:

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit \\
      --master 'local[2]' \\
      --jars "$(ls .stack/jars/spark/*.jar | paste -sd, -)" \\
      --driver-java-options "-Dorg.apache.avro.limits.string.maxLength=8388608 -Dorg.apache.avro.limits.bytes.maxLength=8388608 -Dorg.apache.avro.limits.collectionItems.maxLength=8388608" \\
      jobs/stream_job.py --available-now

Faults: one record never stops the job (a record that cannot be decoded,
or that Cassandra refuses, is dead-lettered with stage `decode` or `write`).
Cassandra, the registry or a Kafka broker being away, at start or mid-stream,
is waited out with backoff for up to STREAM_FAULT_RETRY_SECONDS (spark/faults.py
says what counts as transient); a query that Spark's Kafka source stopped is
restarted from its checkpoint within the same bound. The job's state
(running / waiting for a service / failed with batch, offsets and a hint)
is in <checkpoint>/../<name>.state.json (core/job_state.py).

Exit status: 0 when --once/--available-now has drained the topic; 1 when a
service stayed away past the bound, the schema or table is not ready, or the
query fails otherwise (one line on stderr says which and what to do, and the
state file says `failed`); 130 when interrupted.

Everything else (Kafka, registry, Cassandra, topics, checkpoint) comes from
the environment: see core/settings.py. Before the first run the stack
must be up with the schema registered and the table created:
`make up`, `make register`, `make cassandra-schema`.
The batch itself lives in spark/batch.py.

Progress: Spark's offsets live in the checkpoint (SPARK_CHECKPOINT_DIR),
which decides where a restart resumes. After every batch the job also writes
<checkpoint>/../<name>.progress.json (counts, end offsets per partition),
which `make status` reads, logs one line, and commits the batch's end offsets
to the consumer group SPARK_CONSUMER_GROUP, so `kafka-consumer-groups.sh
--describe --group userstream-spark` and Control Center show the job's lag.

Schema evolution: ALTER TABLE first
(`python -m core.cassandra_schema --add-columns-for schemas/new.avsc`),
then register the new version. The job notices the new schema id at the
first record written with it, re-reads the subject's latest version as its
reader, and checks the table can hold it; if not, it stops with the ALTER
TABLE to run, and the batch is decoded again after the restart.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from core.job_state import job_state_path
from core.settings import Settings, load_settings
from core.subjects import user_subject
from core.topics import ensure_pipeline_topics
from spark.batch import BatchProcessor
from spark.consumer_group import GroupCommitter
from spark.decode import avro_compatibility
from spark.faults import (
    CASSANDRA, KAFKA, REGISTRY, FaultRider, StateReporter, describe, failure_error, is_ours,
)
from spark.kafka_options import kafka_options
from spark.progress import progress_path, read_progress
from spark.registry import RegistryClient, SchemaBook
from spark.session import AvroLimitError, MissingJarsError, build_spark_session, stop_spark

log = logging.getLogger("spark.stream_job")
# A task's Kafka consumer ends its read with a fetch for the offsets after its range already sent
# (the Java client fetches ahead). With nothing newer on the broker that fetch waits out
# fetch.max.wait.ms (500 ms by default) and the consumer, reused by the next batch's task for the same
# partition, cannot fetch again until it returns: seen as tasks with 15 ms of CPU in 530 ms
# (bench/profile_job.py). A short wait costs only empty fetch answers while a task runs.
SOURCE_CONSUMER_OPTIONS = {"kafka.fetch.max.wait.ms": "20"}


@dataclass(frozen=True)
class JobOptions:
    """How the query runs; the CLI flags, or what tests pass directly."""

    trigger: str = "processing"  # "processing", "available_now" or "once"
    interval: str = "1 second"
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


class UserStreamJob:
    """The stream's wiring: schema book, fault rider, state file and the batch processor around one query."""

    def __init__(self, spark: SparkSession, settings: Settings, options: JobOptions):
        self.spark = spark
        self.settings = settings
        self.options = options
        self.book = SchemaBook(
            client=RegistryClient.from_settings(settings),
            subject=user_subject(settings),
            reader_version=settings.user_schema_version,
            compatibility=avro_compatibility(spark),
            not_found_grace=settings.registry_not_found_grace_seconds,
        )
        self.state = StateReporter(job_state_path(options.checkpoint))
        self.rider = FaultRider(settings.stream_fault_retry_seconds, on_wait=self.state.waiting, on_recover=self.state.running)
        self.processor = BatchProcessor(spark, settings, self.book, self.rider, progress_path(options.checkpoint),
                                        options.query_name, GroupCommitter(settings).commit,
                                        capped_batches=options.max_offsets_per_trigger is not None and options.trigger != "once")
        self.sink = self.processor.sink
        self.rider.reset[CASSANDRA] = self.sink.renew_session  # a session an outage broke is never used again
        self.query: StreamingQuery | None = None

    def prepare(self) -> None:
        """Before the first batch: the reader schema, a table that can hold it, and the topics (created if missing).

        Spark's Kafka source fails on a topic that does not exist yet, and a
        dead-letter write to a missing topic blocks, then fails the batch. A
        service that is away is waited for, like mid-stream.
        """
        self.rider.call(REGISTRY, self.book.load_reader, "start: reading the reader schema")
        self.rider.call(CASSANDRA, lambda: self.sink.check_columns(self.book.reader), "start: checking the table")
        self.processor.checked_reader_id = self.book.reader.id
        created = self.rider.call(KAFKA, lambda: ensure_pipeline_topics(self.settings), "start: checking the topics")
        if created:
            log.info("created topics %s", ", ".join(created))

    def process_batch(self, batch: DataFrame, batch_id: int) -> None:
        """The foreachBatch function (spark/batch.py); a batch that made it through means the job is running."""
        self.processor.process(batch, batch_id)
        self.state.running()

    def start(self) -> StreamingQuery:
        """Start the streaming query (checks first); the caller awaits or stops it."""
        self.prepare()
        self.processor.failure = None
        opts = self.options
        source = (
            self.spark.readStream.format("kafka")
            .options(**kafka_options(self.settings))
            .option("subscribe", self.settings.users_topic)
            .option("startingOffsets", opts.starting_offsets)
            .option("includeHeaders", "true")
            .options(**SOURCE_CONSUMER_OPTIONS)
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
        self.query = writer.start()
        self.state.running()
        log.info(
            "query %s started: topic %s -> %s.%s, dead letters -> %s, checkpoint %s, trigger %s",
            opts.query_name, self.settings.users_topic, self.settings.cassandra_keyspace, self.settings.cassandra_table,
            self.settings.dead_letter_topic, opts.checkpoint, opts.interval if opts.trigger == "processing" else opts.trigger,
        )
        return self.query

    def run(self) -> None:
        """Start the query and wait for it; restart it from the checkpoint while Spark's Kafka source cannot reach Kafka.

        Spark's own Kafka source (the offsets between batches) fails the
        query outright when the brokers stay away; the checkpoint makes a
        restart resume exactly there. A batch that failed raises its own
        exception (not Spark's wrapper), so it is classified as itself.
        """
        def run_query() -> None:
            query = self.start()
            try:
                query.awaitTermination()
            except StreamingQueryException as exc:
                if self.processor.failure is not None:
                    raise self.processor.failure.error from exc
                raise

        self.rider.call(KAFKA, run_query, f"query {self.options.query_name}", healthy_since=lambda: self.processor.last_batch_done)

    def stopped(self, error: BaseException) -> dict[str, Any]:
        """Write the `failed` state for `error`; the batch and offsets it stopped at, else where the job would resume."""
        failure = self.processor.failure
        if failure is not None and (failure.error is error or error.__cause__ is failure.error):
            batch_id, offsets = failure.batch_id, failure.offsets
        else:
            batch_id, offsets = None, (read_progress(progress_path(self.options.checkpoint)) or {}).get("end_offsets")
        record = failure_error(error, batch_id, offsets)
        self.state.failed(record)
        return record


def main(argv: list[str] | None = None) -> int:
    """Build the session, run the query until it ends; a failure exits 1 with one line saying what to do."""
    args = parse_args(argv)
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
    except (MissingJarsError, AvroLimitError) as exc:
        StateReporter(job_state_path(options.checkpoint)).failed(failure_error(exc, None, None))
        return fail(str(exc))
    spark.sparkContext.setLogLevel("WARN")
    code = 1
    try:
        code = run_until_stopped(spark, settings, options)
    finally:
        if not stop_spark(spark):
            # Threads still inside calls to the killed JVM would hold up a normal exit.
            logging.shutdown()
            sys.stderr.flush()
            os._exit(code)
    return code


def run_until_stopped(spark: SparkSession, settings: Settings, options: JobOptions) -> int:
    """Run the query until it ends: 0, 130 when interrupted, or 1 with the one line saying what to do."""
    job = None
    try:
        job = UserStreamJob(spark, settings, options)
        job.run()
    except KeyboardInterrupt:
        log.info("interrupted: stopping query %s (the current batch is replayed on the next start)", options.query_name)
        if job is not None and job.query is not None:
            job.query.stop()
        return 130
    except Exception as exc:  # every way the job ends badly: recorded in the state file, one line on stderr, exit 1
        if not is_ours(exc):
            log.error("query %s stopped", options.query_name, exc_info=exc)  # the JVM trace, for whoever digs deeper
        record = job.stopped(exc) if job is not None else failure_error(exc, None, None)
        return fail(failure_line(exc, record))
    return 0


def failure_line(exc: BaseException, record: dict[str, Any]) -> str:
    """The one line a user sees last: what stopped the job, where, and what to do."""
    what = (" ".join(str(exc).split()) if is_ours(exc) else describe(exc, limit=1000)).rstrip(".")
    where = ""
    if record.get("batch_id") is not None:
        where = f" (batch {record['batch_id']} was not committed and is redone from the checkpoint on restart)"
    return f"{what}{where}. {record['hint']}"


def fail(message: str) -> int:
    """The message on stderr, without a Python traceback that would bury it; exit status 1."""
    print(f"spark.stream_job: {message}", file=sys.stderr)
    return 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m spark.stream_job",
        description="Kafka (Confluent Avro) -> Spark from_avro per schema id -> Cassandra, poison records -> dead-letter topic.",
    )
    parser.add_argument("--master", help="local[N] or spark://host:7077 (default: SPARK_MASTER)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--trigger", metavar="INTERVAL", help='micro-batch interval, e.g. "1 second" (default: SPARK_TRIGGER_INTERVAL)')
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
    sys.exit(main())
