"""Where does a micro-batch's time go in the stream job? Phases, Spark's durationMs, and the Spark jobs per batch.

Usage:
    python -m bench.profile_job                          # 30000 users in batches of 10000
    python -m bench.profile_job --users 20000 --batch 5000 --connector-sweep

One run on a private corner of the stack. The users are published first (a
backlog), then the job's own UserStreamJob runs in this process with
`availableNow` and maxOffsetsPerTrigger = --batch, so every batch has the
same size and batches run back to back. Measured per batch:
  * wall time of each phase of UserStreamJob.process_batch (summarize =
    the header pass and its collect; count = decode + re-encode check, cached;
    sink = dedupe window + Cassandra connector write; record = progress
    file; the rest is "other"), by wrapping those methods here: spark/ is
    not changed;
  * Spark's own StreamingQueryProgress.durationMs (addBatch is the whole
    foreachBatch; getBatch, latestOffset, queryPlanning, walCommit,
    commitOffsets around it);
  * the Spark jobs (actions) each batch ran, from the Spark UI's REST API:
    call site, duration, stages, tasks.
With --connector-sweep, one batch of records is also decoded with the job's
decode() and with a bare from_avro (the cost of the trailing-bytes check),
and its decoded rows are written under several spark.cassandra.output.*
settings (the expected gain of tuning them). Results: a table and bench/results/profile_job-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from bench.corner import BenchCorner
from bench.load import Publisher
from bench.users import fetch_pool, fresh_users
from core import cassandra_schema
from core.settings import REPO_ROOT, Settings, load_settings

RESULTS_DIR = REPO_ROOT / "bench" / "results"
# Connector write settings to compare (options of the DataFrame writer; defaults in the first row).
SWEEP = {
    "defaults (concurrent.writes 5, grouping partition)": {},
    "concurrent.writes 16": {"spark.cassandra.output.concurrent.writes": "16"},
    "concurrent.writes 64": {"spark.cassandra.output.concurrent.writes": "64"},
    "grouping replica_set, 64 rows": {"spark.cassandra.output.batch.grouping.key": "replica_set",
                                      "spark.cassandra.output.batch.size.rows": "64"},
    "grouping none, 64 rows": {"spark.cassandra.output.batch.grouping.key": "none",
                               "spark.cassandra.output.batch.size.rows": "64"},
    "consistency ONE": {"spark.cassandra.output.consistency.level": "ONE"},
    "concurrent 64 + replica_set 64 rows": {"spark.cassandra.output.concurrent.writes": "64",
                                            "spark.cassandra.output.batch.grouping.key": "replica_set",
                                            "spark.cassandra.output.batch.size.rows": "64"},
}


class PhaseTimer:
    """Wraps the job's phase methods and keeps each batch's wall time per phase."""

    def __init__(self):
        self.batches: list[dict[str, Any]] = []
        self.current: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[label] += time.perf_counter() - started

        setattr(owner, name, timed)

    def instrument(self, job: Any, stream_job_module: Any) -> None:
        """Phases of UserStreamJob.process_batch; process_batch itself becomes the per-batch record."""
        self.wrap(stream_job_module, "summarize", "summarize (header pass + collect)")
        self.wrap(job.book, "update", "schema book update")
        self.wrap(stream_job_module, "decode", "decode plan (lazy)")
        self.wrap(job, "_count", "count (decode + re-encode, cached)")
        self.wrap(job.sink, "write", "sink (dedupe + connector write)")
        self.wrap(job.dead_letters, "write", "dead letters")
        self.wrap(job, "_record", "progress file")
        original = job.process_batch

        def batch(df, batch_id):
            self.current = defaultdict(float)
            started, wall = time.perf_counter(), time.time()
            original(df, batch_id)
            total = time.perf_counter() - started
            phases = dict(self.current)
            phases["other"] = total - sum(phases.values())
            self.batches.append({"batch_id": batch_id, "start": wall, "end": time.time(), "seconds": total,
                                 "phases": {k: round(v, 3) for k, v in phases.items()}})

        job.process_batch = batch


def spark_jobs(spark: Any) -> list[dict[str, Any]]:
    """Every job the Spark UI kept: call site, submission/completion (epoch s), stages, tasks."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    parse = lambda text: dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%Z").replace(tzinfo=dt.timezone.utc).timestamp()  # noqa: E731
    jobs = []
    for job in requests.get(url, timeout=30).json():
        if "completionTime" in job:
            start, end = parse(job["submissionTime"]), parse(job["completionTime"])
            jobs.append({"name": job["name"], "start": start, "seconds": round(end - start, 3),
                         "stages": len(job["stageIds"]), "tasks": job["numTasks"]})
    return jobs


def run_query(spark: Any, settings: Settings, batch: int) -> tuple[list[dict], list[dict]]:
    """The job's own foreachBatch on the backlog; returns (per-batch phases, Spark's progress records)."""
    from spark import stream_job
    from spark.stream_job import JobOptions, UserStreamJob

    options = JobOptions.from_settings(settings, trigger="available_now", max_offsets_per_trigger=batch)
    job = UserStreamJob(spark, settings, options)
    timer = PhaseTimer()
    timer.instrument(job, stream_job)
    query = job.start()
    if not query.awaitTermination(1800):
        query.stop()
        raise RuntimeError("the profiled query did not drain its backlog within 30 minutes")
    return timer.batches, [p if isinstance(p, dict) else json.loads(p.json) for p in query.recentProgress]


def decode_variants(framed: Any, snapshot: Any, repeats: int) -> dict[str, float]:
    """Rows/s of the job's full decode (checks + to_avro re-encode) vs a bare from_avro, on the same cached records."""
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro

    from spark.decode import decode, from_avro_options

    reader = snapshot.reader
    variants = {
        "decode(): from_avro + re-encode + checks": lambda: decode(framed, snapshot).agg(
            F.count(F.when(F.col("reason").isNull(), 1))).first(),
        "bare from_avro (no trailing-bytes check)": lambda: framed.select(
            from_avro(F.expr("substring(value, 6)"), reader.schema, from_avro_options(reader.schema)).alias("u")
        ).agg(F.count(F.col("u.id"))).first(),
    }
    count = framed.count()
    results = {}
    for label, action in variants.items():
        seconds = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            action()
            seconds.append(time.perf_counter() - started)
        results[label] = round(count / statistics.median(seconds[1:]), 1)
    return results


def connector_sweep(spark: Any, settings: Settings, rows: int, repeats: int = 2) -> dict[str, float]:
    """Rows/s of the bare connector write of `rows` decoded users under each SWEEP setting (median of repeats)."""
    from pyspark import StorageLevel

    from spark.decode import decode, good_rows, with_header
    from spark.kafka_options import kafka_options
    from spark.registry import RegistryClient, SchemaBook
    from spark.decode import avro_compatibility
    from core.subjects import user_subject
    from spark.sink import CASSANDRA_FORMAT

    raw = (spark.read.format("kafka").options(**kafka_options(settings)).option("subscribe", settings.users_topic)
           .option("startingOffsets", "earliest").option("endingOffsets", "latest").option("includeHeaders", "true")
           .load().limit(rows))
    book = SchemaBook(client=RegistryClient.from_settings(settings), subject=user_subject(settings),
                      reader_version=settings.user_schema_version, compatibility=avro_compatibility(spark))
    book.load_reader()
    framed = with_header(raw)
    snapshot, _ = book.update(sorted(r.schema_id for r in framed.select("schema_id").distinct().collect()))
    framed = framed.persist(StorageLevel.MEMORY_ONLY)
    framed.count()
    results = decode_variants(framed, snapshot, repeats)
    decoded = good_rows(decode(framed, snapshot)).persist(StorageLevel.MEMORY_ONLY)
    count = decoded.count()
    table = f"{settings.cassandra_keyspace}.{settings.cassandra_table}"
    for label, options in SWEEP.items():
        seconds = []
        for _ in range(repeats + 1):  # the first run warms up
            with cassandra_schema.connect(settings) as session:
                session.execute(f"TRUNCATE {table}")
            started = time.perf_counter()
            (decoded.write.format(CASSANDRA_FORMAT).options(keyspace=settings.cassandra_keyspace,
                                                            table=settings.cassandra_table, **options)
             .mode("append").save())
            seconds.append(time.perf_counter() - started)
        results[label] = round(count / statistics.median(seconds[1:]), 1)
    decoded.unpersist()
    return results


def run_profile(users: int, batch: int, sweep: bool, base: Settings) -> dict[str, Any]:
    from spark.session import build_spark_session

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch, \
            BenchCorner(base, "prof", Path(scratch)) as corner:
        s = corner.settings
        pool = fetch_pool(s, min(users, 20_000))
        Publisher(s, corner.subject).publish((None, u) for u in fresh_users(pool, users))
        spark = build_spark_session(s, "profile-job", extra_conf={"spark.ui.enabled": "true"})
        spark.sparkContext.setLogLevel("WARN")
        try:
            batches, progress = run_query(spark, s, batch)
            jobs = spark_jobs(spark)
            sweep_result = connector_sweep(spark, s, batch) if sweep else None
        finally:
            spark.stop()
    for record in batches:
        mine = [j for j in jobs if record["start"] - 0.5 <= j["start"] <= record["end"]]
        record["spark_jobs"] = [{k: j[k] for k in ("name", "seconds", "stages", "tasks")} for j in mine]
    durations = {p["batchId"]: p.get("durationMs", {}) for p in progress}
    for record in batches:
        record["duration_ms"] = durations.get(record["batch_id"], {})
    return {
        "benchmark": "profile_job",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "users": users, "batch": batch, "spark_master": s.spark_master,
        "shuffle_partitions": s.spark_shuffle_partitions,
        "batches": batches,
        "sweep_rows_per_s": sweep_result,
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"profile_job: {result['users']:,} users in batches of {result['batch']:,} ({result['spark_master']})"]
    full = [b for b in result["batches"] if b["batch_id"] > 0] or result["batches"]  # batch 0 carries the JIT warm-up
    phases = sorted({name for b in full for name in b["phases"]})
    lines.append(f"  mean per batch over {len(full)} batches after the first, seconds:")
    for name in sorted(phases, key=lambda n: -statistics.mean(b["phases"].get(n, 0) for b in full)):
        lines.append(f"    {name:<40}{statistics.mean(b['phases'].get(name, 0) for b in full):>8.2f}")
    lines.append(f"    {'total (process_batch)':<40}{statistics.mean(b['seconds'] for b in full):>8.2f}"
                 f"   -> {result['batch'] / statistics.mean(b['seconds'] for b in full):,.0f} rows/s")
    keys = sorted({k for b in full for k in b["duration_ms"]})
    lines.append("  Spark durationMs, mean: " + ", ".join(
        f"{k} {statistics.mean(b['duration_ms'].get(k, 0) for b in full):,.0f}" for k in keys))
    lines.append(f"  Spark jobs per batch: {statistics.mean(len(b['spark_jobs']) for b in full):.1f}; last batch's:")
    for job in full[-1]["spark_jobs"]:
        lines.append(f"    {job['seconds']:>7.2f} s  {job['stages']} stages {job['tasks']:>4} tasks  {job['name']}")
    if result["sweep_rows_per_s"]:
        lines.append("  decode variants (cached records) and connector writes (pre-decoded rows), rows/s:")
        for label, rate in result["sweep_rows_per_s"].items():
            lines.append(f"    {label:<52}{rate:>10,.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_job", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=10_000, help="maxOffsetsPerTrigger: users per batch")
    parser.add_argument("--connector-sweep", action="store_true", help="also time connector write settings")
    args = parser.parse_args(argv)
    if args.batch < 100 or args.users < args.batch:
        parser.error("--batch must be >= 100 and --users >= --batch")
    result = run_profile(args.users, args.batch, args.connector_sweep, load_settings())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"profile_job-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
