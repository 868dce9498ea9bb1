"""Where does a micro-batch's time go in the stream job? Spark's durationMs and the Spark jobs (actions) per batch.

Usage:
    python -m bench.profile_job                          # 30000 users in batches of 10000
    python -m bench.profile_job --users 20000 --batch 5000 --connector-sweep

One run on a private corner of the stack. The users are published first (a
backlog), then the real job runs as a subprocess,
`python -m spark.stream_job --available-now --max-offsets-per-trigger <batch>`,
so every batch has the same size and batches run back to back, with
Spark's event log switched on (through PYSPARK_SUBMIT_ARGS; spark/ is not
changed). From the event log, per batch:
  * StreamingQueryProgress.durationMs: addBatch is the whole foreachBatch
    function; getBatch, latestOffset, queryPlanning, walCommit and
    commitOffsets are Spark's own work around it;
  * every Spark job the batch ran: its call site in our code (e.g.
    `collect at spark/batch.py:57`), seconds, stages and tasks; the part of
    addBatch no job covers is driver-side Python (registry, progress file,
    consumer-group commit, py4j);
  * the CPU seconds of the tasks (event log) and of the job's whole process
    tree while the batch ran (sampled here with psutil): the difference is
    the driver's own work.
Reading the event log instead of wrapping the job's methods keeps the
profile valid while spark/ changes.
With --connector-sweep, one batch of records is also decoded in this process
with the job's decode() and with a bare from_avro (the cost of the
trailing-bytes check), and its decoded rows are written under several
spark.cassandra.output.* settings (the expected gain of tuning them).
Results: a table and bench/results/profile_job-<UTC time>.json (+ the job's log and Spark event log).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.corner import BenchCorner
from bench.job import StreamJob
from bench.load import Publisher, conf_pair
from bench.monitor import CpuMeter
from bench.report import RESULTS_DIR, utc_stamp, write_result
from bench.users import fetch_pool, fresh_users
from core import cassandra_schema
from core.settings import REPO_ROOT, Settings, load_settings

# Connector write settings to compare (options of the DataFrame writer; defaults in the first row).
SWEEP = {
    "defaults (concurrent.writes 5, grouping partition)": {},
    "concurrent.writes 16": {"spark.cassandra.output.concurrent.writes": "16"},
    "concurrent.writes 64": {"spark.cassandra.output.concurrent.writes": "64"},
    # Unlogged batches of many partitions. Cassandra sizes a batch with per-cell overhead the connector's
    # batch.size.bytes does not count: 32 KiB of values already exceeds batch_size_fail_threshold (50 KiB).
    "grouping replica_set, 8 KiB batches": {"spark.cassandra.output.batch.grouping.key": "replica_set",
                                             "spark.cassandra.output.batch.size.bytes": "8192"},
    "grouping none, 8 KiB batches": {"spark.cassandra.output.batch.grouping.key": "none",
                                      "spark.cassandra.output.batch.size.bytes": "8192"},
    "consistency ONE": {"spark.cassandra.output.consistency.level": "ONE"},
    "concurrent 64 + replica_set 8 KiB": {"spark.cassandra.output.concurrent.writes": "64",
                                           "spark.cassandra.output.batch.grouping.key": "replica_set",
                                           "spark.cassandra.output.batch.size.bytes": "8192"},
}
PROGRESS_EVENT = "org.apache.spark.sql.streaming.StreamingQueryListener$QueryProgressEvent"


def action_label(plan: str) -> str:
    """What a Spark SQL execution did, named after the job's step it comes from (by its physical plan)."""
    if "AppendData" in plan:
        return "write rows to Cassandra" + (" (dedupe window + connector)" if "Window" in plan else "")
    if "kafka" in plan.lower() and "WriteToDataSourceV2" in plan:
        return "write dead letters to Kafka"
    if "from_avro" in plan and "HashAggregate" in plan:
        return "summary: Kafka read + decode + counts (cached)"
    if "HashAggregate" in plan:
        return "aggregate without decode"
    return plan.split("== Physical Plan ==")[-1].strip().splitlines()[0][:60] if plan.strip() else "?"


def read_event_log(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(query progress records, finished Spark jobs with batch id and step, SQL executions) from the event log in `folder`.

    A batch's foreachBatch call is one root SQL execution (its start and end
    bracket the Python function); the jobs it runs are nested executions.
    """
    [path] = [p for p in folder.iterdir() if p.is_file()]
    progress, jobs, labels, executions = [], {}, {}, {}
    stage_cpu: dict[int, float] = defaultdict(float)  # seconds of task CPU per stage
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            kind = event["Event"]
            if kind.endswith("SQLExecutionStart"):
                labels[str(event["executionId"])] = action_label(event.get("physicalPlanDescription", ""))
                executions[str(event["executionId"])] = {"start": event["time"] / 1e3,
                                                         "root": str(event.get("rootExecutionId", event["executionId"]))}
            elif kind.endswith("SQLExecutionEnd") and str(event["executionId"]) in executions:
                executions[str(event["executionId"])]["end"] = event["time"] / 1e3
            elif kind == "SparkListenerJobStart":
                props = event.get("Properties") or {}
                batch = re.search(r"batch = (\d+)", props.get("spark.job.description", ""))
                jobs[event["Job ID"]] = {
                    "name": labels.get(props.get("spark.sql.execution.id", ""), props.get("callSite.short", "?")),
                    "execution": props.get("spark.sql.execution.id", ""),
                    "batch_id": int(batch.group(1)) if batch else None, "start": event["Submission Time"] / 1e3,
                    "stages": len(event["Stage Infos"]), "tasks": sum(st["Number of Tasks"] for st in event["Stage Infos"]),
                    "stage_ids": event["Stage IDs"],
                }
            elif kind == "SparkListenerTaskEnd":
                stage_cpu[event["Stage ID"]] += (event.get("Task Metrics") or {}).get("Executor CPU Time", 0) / 1e9
            elif kind == "SparkListenerJobEnd" and event["Job ID"] in jobs:
                job = jobs[event["Job ID"]]
                job["seconds"] = round(event["Completion Time"] / 1e3 - job["start"], 3)
            elif kind == PROGRESS_EVENT:
                progress.append(event["progress"])
    for job in jobs.values():
        job["task_cpu_seconds"] = round(sum(stage_cpu[stage] for stage in job.pop("stage_ids")), 3)
    return progress, [job for job in jobs.values() if "seconds" in job], executions


def driver_gaps(mine: list[dict[str, Any]], executions: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Seconds the foreachBatch function spent outside Spark jobs: before each job, and after the last one."""
    root = executions.get(executions.get(mine[0]["execution"], {}).get("root", ""), {}) if mine else {}
    if "end" not in root:
        return {}
    gaps, edge = {}, root["start"]
    for job in mine:
        gaps[f"before: {job['name']}"] = round(job["start"] - edge, 3)
        edge = job["start"] + job["seconds"]
    gaps["after the last job (progress, commit, unpersist)"] = round(root["end"] - edge, 3)
    return gaps


def per_batch(progress: list[dict[str, Any]], jobs: list[dict[str, Any]],
              executions: dict[str, dict[str, Any]], cpu: CpuTrace | None = None) -> list[dict[str, Any]]:
    """Each batch with data: its durationMs, the Spark jobs it ran, and the job's CPU seconds while it ran."""
    batches = []
    for record in progress:
        rows = sum(source.get("numInputRows", 0) for source in record.get("sources", []))
        if not rows:
            continue
        mine = sorted((j for j in jobs if j["batch_id"] == record["batchId"]), key=lambda j: j["start"])
        add_batch = record["durationMs"].get("addBatch", 0) / 1e3
        batches.append({
            "batch_id": record["batchId"], "rows": rows, "duration_ms": record["durationMs"],
            "spark_jobs": [{k: j[k] for k in ("name", "seconds", "stages", "tasks")} for j in mine],
            "driver_seconds_outside_jobs": round(add_batch - sum(j["seconds"] for j in mine), 3),
            "task_cpu_seconds": round(sum(j["task_cpu_seconds"] for j in mine), 3),
            "job_cpu_seconds": cpu.during(record) if cpu else None,
            "driver_gaps": driver_gaps(mine, executions),
        })
    return batches


class CpuTrace(threading.Thread):
    """The job's whole process tree (Python driver, JVM), its CPU seconds so far, sampled every 0.5 s.

    Why: a batch's Spark tasks (their CPU is in the event log) are only part
    of what the job burns per batch; planning, serializing stages, py4j and
    Spark's listeners run in the driver, outside any task.
    """

    def __init__(self, tree: Any, interval: float = 0.5):
        super().__init__(name="profile-cpu", daemon=True)
        self.tree, self.interval = tree, interval
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, CPU seconds so far)
        self.done = threading.Event()

    def run(self) -> None:
        meter, pids, total = CpuMeter(), [], 0.0
        while not self.done.wait(self.interval):
            if len(self.samples) % 10 == 0:  # the tree is walked every 5 s only: the sampling must stay cheap
                pids = [process.pid for process in self.tree()]
            total += meter.measure({"job": pids})["job"]["cpu_seconds"]
            self.samples.append((time.time(), total))

    def at(self, when: float) -> float:
        """CPU seconds so far at `when`, interpolated between samples."""
        for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:]):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * (when - t0) / (t1 - t0 or 1)
        return self.samples[-1][1] if self.samples and when > self.samples[-1][0] else 0.0

    def during(self, record: dict[str, Any]) -> float | None:
        """CPU seconds the job used during one progress record's triggerExecution."""
        start = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        end = start + record["durationMs"].get("triggerExecution", 0) / 1e3
        if not self.samples or start < self.samples[0][0] or end > self.samples[-1][0]:
            return None
        return round(self.at(end) - self.at(start), 3)


def run_job(corner: BenchCorner, batch: int, events: Path, log_path: Path, timeout: float,
            extra_conf: dict[str, str]) -> list[dict[str, Any]]:
    """The real job drains the backlog in batches of `batch`; returns its batches from the event log (kept in `events`)."""
    events.mkdir(parents=True)
    conf = {**extra_conf, "spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{events}"}
    args = ["--available-now", "--max-offsets-per-trigger", str(batch)]
    with StreamJob(corner.job_env(), log_path, args, conf) as job:
        cpu = CpuTrace(job.tree)
        cpu.start()
        try:
            code = job.wait_exit(timeout)
        finally:
            cpu.done.set()
            cpu.join()
        if code != 0:
            raise RuntimeError(f"the stream job exited with status {code}; log ({log_path}):\n{job.log_tail()}")
    return per_batch(*read_event_log(events), cpu)


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
    seconds: dict[str, list[float]] = {label: [] for label in variants}
    for round_ in range(repeats + 1):  # round 0 warms up; round-robin so the machine's drift hits both alike
        for label, action in variants.items():
            started = time.perf_counter()
            action()
            if round_:
                seconds[label].append(time.perf_counter() - started)
    return {label: round(count / statistics.median(times), 1) for label, times in seconds.items()}


def connector_sweep(spark: Any, settings: Settings, rows: int, repeats: int = 3) -> dict[str, float | str]:
    """Rows/s of the bare connector write of `rows` decoded users under each SWEEP setting (median of repeats)."""
    from py4j.protocol import Py4JJavaError
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

    def write(options: dict[str, str]) -> float:
        with cassandra_schema.connect(settings) as session:
            session.execute(f"TRUNCATE {table}")
        started = time.perf_counter()
        (decoded.write.format(CASSANDRA_FORMAT).options(keyspace=settings.cassandra_keyspace,
                                                        table=settings.cassandra_table, **options)
         .mode("append").save())
        return time.perf_counter() - started

    write({})  # warm-up
    # Round-robin, so a change in the machine's other load hits every setting alike.
    seconds: dict[str, list[float]] = {label: [] for label in SWEEP}
    for _ in range(repeats):
        for label, options in SWEEP.items():
            if label in results:
                continue  # refused in an earlier round
            try:
                seconds[label].append(write(options))
            except Py4JJavaError as exc:  # a setting Cassandra refuses is a result of the sweep, reported as such
                causes = re.findall(r"(\w+Exception): ([^\n]+)", str(exc.java_exception.toString()) + str(exc))
                results[label] = f"failed: {causes[-1][0]}: {causes[-1][1][:120]}" if causes else "failed"
    for label, times in seconds.items():
        if label not in results:
            results[label] = round(count / statistics.median(times), 1)
    decoded.unpersist()
    return results


def run_profile(users: int, batch: int, sweep: bool, base: Settings, stamp: str,
                job_conf: dict[str, str] | None = None) -> dict[str, Any]:
    log_path = RESULTS_DIR / f"profile_job-{stamp}-job.log"
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch, \
            BenchCorner(base, "prof", Path(scratch)) as corner:
        s = corner.settings
        pool = fetch_pool(s, min(users, 20_000))
        Publisher(s, corner.subject).publish((None, u) for u in fresh_users(pool, users))
        batches = run_job(corner, batch, RESULTS_DIR / f"profile_job-{stamp}-events", log_path, 1800, job_conf or {})
        sweep_result = None
        if sweep:
            from spark.session import build_spark_session

            spark = build_spark_session(s, "profile-job-sweep")
            spark.sparkContext.setLogLevel("WARN")
            try:
                sweep_result = connector_sweep(spark, s, batch)
            finally:
                spark.stop()
    return {
        "benchmark": "profile_job",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "users": users, "batch": batch, "spark_master": base.spark_master, "job_conf": job_conf or {},
        "shuffle_partitions": base.spark_shuffle_partitions,
        "batches": batches,
        "sweep_rows_per_s": sweep_result,
        "job_log": str(log_path.relative_to(REPO_ROOT)),
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"profile_job: {result['users']:,} users in batches of {result['batch']:,} ({result['spark_master']})"
             + "".join(f", {k}={v}" for k, v in result.get("job_conf", {}).items())]
    # The first batch warms the JIT; the last one may be a remainder.
    full = [b for b in result["batches"][1:] if b["rows"] >= 0.9 * result["batch"]] or result["batches"]
    mean = lambda values: statistics.mean(values) if values else 0.0  # noqa: E731
    keys = sorted({k for b in full for k in b["duration_ms"]}, key=lambda k: -mean([b["duration_ms"].get(k, 0) for b in full]))
    lines.append(f"  Spark durationMs, mean of {len(full)} full batches after the first (ms):")
    lines += [f"    {k:<40}{mean([b['duration_ms'].get(k, 0) for b in full]):>10,.0f}" for k in keys]
    trigger = mean([b["duration_ms"].get("triggerExecution", 0) for b in full]) / 1e3
    lines.append(f"    -> {result['batch'] / trigger:,.0f} rows/s per batch" if trigger else "")
    by_site: dict[str, list[float]] = defaultdict(list)
    for b in full:
        for job in b["spark_jobs"]:
            by_site[job["name"]].append(job["seconds"])
    lines.append(f"  Spark jobs per batch: {mean([len(b['spark_jobs']) for b in full]):.1f}; seconds per batch by call site:")
    for site, seconds in sorted(by_site.items(), key=lambda item: -sum(item[1])):
        lines.append(f"    {sum(seconds) / len(full):>7.2f} s  ({len(seconds) / len(full):.1f} jobs)  {site}")
    cpu = [b["job_cpu_seconds"] for b in full if b.get("job_cpu_seconds") is not None]
    if cpu:
        tasks = mean([b["task_cpu_seconds"] for b in full])
        lines.append(f"  CPU per batch, the job's process tree: {mean(cpu):.2f} s, of which Spark tasks {tasks:.2f} s "
                     f"({tasks / mean(cpu):.0%}); the rest is driver work (planning, stage serialization, py4j, listeners)")
    lines.append(f"    {mean([b['driver_seconds_outside_jobs'] for b in full]):>7.2f} s  driver-side, outside any Spark job:")
    for gap in (full[0].get("driver_gaps") or {}):
        lines.append(f"    {mean([b['driver_gaps'].get(gap, 0) for b in full]):>15.2f} s  {gap}")
    if result["sweep_rows_per_s"]:
        lines.append("  decode variants (cached records) and connector writes (pre-decoded rows), rows/s:")
        for label, rate in result["sweep_rows_per_s"].items():
            lines.append(f"    {label:<52}{rate:>10,.0f}" if isinstance(rate, float) else f"    {label:<52}  {rate}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_job", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=10_000, help="maxOffsetsPerTrigger: users per batch")
    parser.add_argument("--connector-sweep", action="store_true", help="also time connector write settings")
    parser.add_argument("--job-conf", type=conf_pair, action="append", default=[], metavar="spark.KEY=VALUE",
                        help="extra Spark setting for the job (repeatable)")
    args = parser.parse_args(argv)
    if args.batch < 100 or args.users < args.batch:
        parser.error("--batch must be >= 100 and --users >= --batch")
    stamp = utc_stamp()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)  # the job's log and event log go there while it runs
    result = run_profile(args.users, args.batch, args.connector_sweep, load_settings(), stamp, dict(args.job_conf))
    write_result("profile_job", result, render(result), stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
