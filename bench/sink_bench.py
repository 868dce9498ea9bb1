"""How close does decode + write get to what Cassandra can take? Rows/s of the job's batch vs the connector alone.

Usage:
    python -m bench                      # via bench/__main__.py (make bench starts the stack first)
    python -c "from bench.sink_bench import main; main()" --records 20000 --repeats 5 --warmup 3

One run, one SparkSession, on a private topic and keyspace of the stack:
  1. produce N users (confluent-kafka AvroSerializer), read them back once
     as a batch DataFrame and cache it, so Kafka is not what is measured;
  2. "pipeline": the stream job's own foreachBatch function
     (UserStreamJob.process_batch: header parse, per-schema-id from_avro,
     trailing-byte check, counts, Cassandra upsert, progress file, group
     commit) on the cached records;
  3. "sink": CassandraSink.write (dedupe + upsert) of the same rows already
     decoded and cached;
  4. "ceiling": the bare connector write of the same decoded rows, with its
     default settings and with the job's write options (concurrent writes).
Each is timed `--repeats` times after `--warmup` rounds, into a truncated
table, round-robin so Cassandra's drift weighs on all alike. Three warm-up
rounds by default, since a stream runs for hours: on this 2-core machine
each write kept getting faster for its first four or five runs of 20,000
rows (the JIT of the Spark and Cassandra code paths: 10 s, then 5, 4.3,
3.2, 2.9 s for the same connector write).
Ratios are paired, round by round (bench.stats.paired_ratio), since whole
rounds drift. "pipeline / connector" is issue 10's sink target: the job's
batch against the connector writing the same rows pre-decoded, as it comes;
the connector with the job's write options, its best tuning here, is the
second ratio. The pipeline's own gain from those options counts, as the
issue asks for the connector's write settings to be tuned.
Results: two tables (rows/s, ratios) and bench/results/sink_bench-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import write_result
from bench.stats import paired_ratio
from core import cassandra_schema
from core.settings import Settings, load_settings
from core.subjects import USER_SCHEMA_FILE

WARMUP_ROUNDS = 3
TARGET_RATIO = "pipeline / connector"  # issue 10's sink target
TUNED_RATIO = "pipeline / connector with the job's write options"
# Each ratio: (measured, baseline) of the interleaved runs.
RATIOS = {
    TARGET_RATIO: ("pipeline", "ceiling"),
    TUNED_RATIO: ("pipeline", "ceiling_tuned"),
    "sink / connector": ("sink", "ceiling"),
}
SCHEMA = json.loads(USER_SCHEMA_FILE.read_text(encoding="utf-8"))


def bench_user(i: int) -> dict[str, Any]:
    """A realistic user (non-Latin names, a null every third record)."""
    epoch = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    first, last = [("Анна", "Иванова"), ("مهسا", "رضایی"), ("José", "Núñez"), ("美咲", "佐藤")][i % 4]
    return {
        "id": str(uuid.uuid4()), "username": f"user{i}", "gender": "female", "title": "Ms",
        "first_name": first, "last_name": last, "email": f"user{i}@example.com", "phone": "(02) 555-0101",
        "cell": "+98 912 000 0000", "date_of_birth": epoch - dt.timedelta(days=9000 + i % 9000),
        "registered_at": epoch + dt.timedelta(minutes=i), "street_number": i % 9999, "street_name": "Main street",
        "city": "Adelaide", "state": "South Australia", "country": "Australia", "postcode": str(5000 + i % 999),
        "latitude": -34.9, "longitude": 138.6, "timezone_offset": "+9:30", "timezone_description": "Adelaide, Darwin",
        "national_id_name": "TFN", "national_id_value": None if i % 3 == 0 else f"{i:09d}",
        "picture_large": "https://example.com/l.jpg", "picture_medium": "https://example.com/m.jpg",
        "picture_thumbnail": "https://example.com/t.jpg", "nationality": "AU", "ingested_at": epoch,
    }


class BenchCorner:
    """A private topic, subject and keyspace on the shared stack, removed afterwards."""

    def __init__(self, base: Settings):
        token = uuid.uuid4().hex[:8]
        self.settings = base.model_copy(update={
            "users_topic": f"bench_{token}",
            "dead_letter_topic": f"bench_{token}.dead_letter",
            "cassandra_keyspace": f"bench_{token}",
            "cassandra_table": "users",
            "cassandra_replication": "SimpleStrategy:1",
            "subject_name_strategy": "topic",
            "user_schema_version": "latest",
        })

    def __enter__(self) -> BenchCorner:
        from confluent_kafka.admin import AdminClient, NewTopic

        s = self.settings
        admin = AdminClient(s.kafka_config())
        for future in admin.create_topics([NewTopic(t, 3, 1) for t in (s.users_topic, s.dead_letter_topic)]).values():
            future.result(timeout=30)
        with cassandra_schema.connect(s) as session:
            cassandra_schema.apply(s, session)
        return self

    def __exit__(self, *exc_info) -> None:
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.schema_registry import SchemaRegistryClient

        s = self.settings
        with cassandra_schema.connect(s) as session:
            session.execute(f"DROP KEYSPACE IF EXISTS {s.cassandra_keyspace}")
        admin = AdminClient(s.kafka_config())  # must outlive its futures
        for future in admin.delete_topics([s.users_topic, s.dead_letter_topic]).values():
            future.result(timeout=30)
        registry = SchemaRegistryClient({**s.schema_registry_config(), "timeout": 30})
        subject = f"{s.users_topic}-value"
        if subject in registry.get_subjects():
            registry.delete_subject(subject)
            if subject in registry.get_subjects(deleted=True):  # Confluent keeps soft-deleted subjects; Apicurio does not
                registry.delete_subject(subject, permanent=True)

    def produce(self, records: int) -> None:
        """Register the schema and publish `records` users the way the producer does."""
        from confluent_kafka import KafkaException, Producer
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        s = self.settings
        registry = SchemaRegistryClient({**s.schema_registry_config(), "timeout": 30})
        registry.register_schema(f"{s.users_topic}-value", Schema(json.dumps(SCHEMA), "AVRO"))
        serializer = AvroSerializer(registry, json.dumps(SCHEMA), conf={"auto.register.schemas": False})
        producer = Producer({**s.kafka_config(), "linger.ms": 20, "compression.type": "lz4"})
        context = SerializationContext(s.users_topic, MessageField.VALUE)
        failures: list[str] = []
        for i in range(records):
            user = bench_user(i)
            producer.produce(s.users_topic, key=user["id"].encode(), value=serializer(user, context),
                             on_delivery=lambda err, _msg: err and failures.append(str(err)))
            producer.poll(0)
        if producer.flush(60) or failures:
            raise KafkaException(f"producing the bench records failed: {failures[:3]}")


def interleaved(actions: dict[str, Any], truncate, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per run of each action, each into an empty table, after `warmup` rounds.

    Round-robin (every action once per round), not one action's repeats in a
    row: Cassandra on the same cores drifts (flushes, compaction of what the
    truncates left), and a drift must weigh on every measurement alike, or
    the ratios measure the order of the runs.
    """
    seconds: dict[str, list[float]] = {name: [] for name in actions}
    for run in range(warmup + repeats):
        for name, action in actions.items():
            truncate()
            start = time.perf_counter()
            action()
            if run >= warmup:  # the first rounds warm the JIT, connections and caches
                seconds[name].append(time.perf_counter() - start)
    return seconds


@dataclass
class CachedBatch:
    """The bench's users, read back once from Kafka and cached raw and decoded, on one SparkSession.

    `job` is the stream job's own (its schema book knows the batch's ids),
    so a bench can run its foreachBatch function on `raw`.
    """

    spark: Any
    settings: Settings
    job: Any  # spark.stream_job.UserStreamJob
    raw: Any  # DataFrame: the Kafka source's columns
    snapshot: Any  # spark.registry.SchemaSnapshot of the batch's schema ids
    decoded: Any  # DataFrame: the good rows, pre-decoded

    def truncate(self) -> None:
        with cassandra_schema.connect(self.settings) as session:
            session.execute(f"TRUNCATE {self.settings.cassandra_keyspace}.{self.settings.cassandra_table}")

    def connector_write(self, rows: Any, options: dict[str, str]) -> None:
        """The bare connector write of `rows` into the corner's table."""
        from spark.sink import CASSANDRA_FORMAT

        s = self.settings
        (rows.write.format(CASSANDRA_FORMAT).options(keyspace=s.cassandra_keyspace, table=s.cassandra_table)
         .options(**options).mode("append").save())


@contextmanager
def cached_batch(records: int, name: str, master: str) -> Iterator[CachedBatch]:
    """Produce `records` users into a private corner and cache them; the session and the corner go at the end."""
    from pyspark import StorageLevel

    from spark.decode import decode, good_rows, with_header
    from spark.kafka_options import kafka_options
    from spark.session import build_spark_session
    from spark.stream_job import JobOptions, UserStreamJob

    with BenchCorner(load_settings()) as corner, tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        s = corner.settings
        corner.produce(records)
        spark = build_spark_session(s, name, master=master)
        spark.sparkContext.setLogLevel("WARN")
        try:
            raw = (
                spark.read.format("kafka").options(**kafka_options(s)).option("subscribe", s.users_topic)
                .option("startingOffsets", "earliest").option("endingOffsets", "latest").option("includeHeaders", "true")
                .load().persist(StorageLevel.MEMORY_ONLY)
            )
            assert raw.count() == records, "not every produced record was read back"
            job = UserStreamJob(spark, s, JobOptions.from_settings(s, checkpoint=str(Path(tmp) / "checkpoint")))
            job.book.load_reader()
            snapshot, _ = job.book.update(sorted(r.schema_id for r in with_header(raw).select("schema_id").distinct().collect()))
            decoded = good_rows(decode(with_header(raw), snapshot)).persist(StorageLevel.MEMORY_ONLY)
            assert decoded.count() == records, "the bench records must all decode"
            yield CachedBatch(spark, s, job, raw, snapshot, decoded)
        finally:
            spark.stop()


def run_bench(records: int, repeats: int, master: str, warmup: int = WARMUP_ROUNDS) -> dict[str, Any]:
    """Measure the three writes on one SparkSession; return the result record."""
    from spark.sink import CassandraSink

    with cached_batch(records, "sink-bench", master) as batch:
        s, decoded = batch.settings, batch.decoded
        sink = CassandraSink(s)
        batch_ids = iter(range(10_000))
        results = interleaved({
            "pipeline": lambda: batch.job.process_batch(batch.raw, next(batch_ids)),
            "sink": lambda: sink.write(decoded),
            "ceiling": lambda: batch.connector_write(decoded, {}),
            # The connector with the job's own write tuning (concurrent writes): its best here.
            "ceiling_tuned": lambda: batch.connector_write(decoded, sink.write_options()),
        }, batch.truncate, repeats, warmup)
        with cassandra_schema.connect(s) as session:
            landed = session.execute(f"SELECT count(*) FROM {s.cassandra_keyspace}.{s.cassandra_table}").one()[0]
        assert landed == records, f"{landed} rows landed, expected {records}"
        cores = batch.spark.sparkContext.defaultParallelism
    medians = {name: statistics.median(times) for name, times in results.items()}
    return {
        "benchmark": "sink_bench",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "records": records,
        "repeats": repeats,
        "warmup_rounds": warmup,
        "spark_master": master,
        "default_parallelism": cores,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds": results,
        "rows_per_second": {name: round(records / sec, 1) for name, sec in medians.items()},
        "write_options": CassandraSink(load_settings()).write_options(),
        # RATIOS' first is issue 10's target: the job's batch against the connector writing the rows as it comes.
        "ratios": paired_ratios(results),
        "best_tuned_connector_rows_per_second": round(records / min(medians["ceiling"], medians["ceiling_tuned"]), 1),
    }


def paired_ratios(seconds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Every ratio of RATIOS, paired round by round over the interleaved runs' seconds."""
    return {name: paired_ratio(seconds[measured], seconds[baseline]) for name, (measured, baseline) in RATIOS.items()}


def render(result: dict[str, Any]) -> str:
    """The result as two small text tables: rows/s, then the paired ratios."""
    rps, ratios = result["rows_per_second"], result["ratios"]
    names = {"pipeline": "pipeline (the job's whole batch)", "sink": "sink (dedupe + write, pre-decoded)",
             "ceiling": "connector, default settings, pre-decoded", "ceiling_tuned": "connector, the job's write options"}
    lines = [f"sink_bench: {result['records']} records, {result['repeats']} rounds after {result['warmup_rounds']} "
             f"warm-up rounds, master {result['spark_master']}",
             f"{'measurement':<46}{'rows/s (median)':>16}"]
    lines += [f"{label:<46}{rps[name]:>16,.0f}" for name, label in names.items()]
    lines += ["", f"{'ratio, round by round (baseline s / measured s)':<58}{'median':>8}{'lowest':>8}{'highest':>8}"]
    lines += [f"{name + (' (target >= 0.8)' if name == TARGET_RATIO else ''):<58}"
              f"{r['median']:>8.2f}{r['min']:>8.2f}{r['max']:>8.2f}" for name, r in ratios.items()]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON; return the result."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="users to produce and write (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=WARMUP_ROUNDS,
                        help=f"untimed rounds of every measurement first (default {WARMUP_ROUNDS})")
    parser.add_argument("--master", default=load_settings().spark_master, help="Spark master (default: the job's SPARK_MASTER)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.records < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--records and --repeats must be >= 1, --warmup >= 0")
    result = run_bench(args.records, args.repeats, args.master, args.warmup)
    write_result("sink_bench", result, render(result))
    return result


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
