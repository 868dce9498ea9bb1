"""Where the job's write loses to the connector's: each step of the decode, written to Cassandra on its own.

Usage:
    python -m bench.sink_steps                       # 20000 users, median of 5 after 3 warm-up rounds
    python -m bench.sink_steps --records 20000 --repeats 7

sink_bench compares the job's whole batch with the connector writing cached
pre-decoded rows. This splits the difference: on the same cached Kafka
records and one SparkSession, the connector writes (with the job's write
options) the rows of each step of the job's decode, adding one step at a
time:
  1. cached pre-decoded rows (the connector alone, sink_bench's ceiling);
  2. from_avro into the reader schema, nothing else;
  3. + the trailing-byte probe (a second Avro read per record);
  4. + the reasons and the observed counts (spark/summary.py, no key check);
  5. + the key check: the job's own write (spark/batch.py's first job).
Besides seconds, it takes the CPU seconds of Cassandra's process and of this
process with its JVM during each write: on a 2-core machine the two share
the cores, so a step's cost shows in both. Results: a table and
bench/results/sink_steps-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from collections.abc import Callable
from typing import Any

import psutil

from bench.report import write_result
from bench.sink_bench import WARMUP_ROUNDS, cached_batch, interleaved
from core.processes import read_pid_file
from core.settings import load_settings
from stack.layout import Layout

STEPS = ("cached pre-decoded rows", "from_avro only", "+ trailing-byte probe", "+ reasons, observed counts",
         "+ key check (the job's write)")


class CpuClock:
    """CPU seconds used by Cassandra's process and by this process tree (the driver JVM is a child) between two reads."""

    def __init__(self, cassandra_pid: int | None):
        self.cassandra = psutil.Process(cassandra_pid) if cassandra_pid else None
        self.me = psutil.Process()

    def read(self) -> tuple[float, float]:
        mine = sum(self.me.cpu_times()[:2]) + sum(sum(child.cpu_times()[:2]) for child in self.me.children(recursive=True))
        return (sum(self.cassandra.cpu_times()[:2]) if self.cassandra else 0.0), mine


def step_frames(raw, snapshot, partitions) -> dict[str, Callable[[], Any]]:
    """A DataFrame factory per step, each over the cached Kafka records; the last is what the job writes."""
    from pyspark.sql import functions as F

    from spark.decode import Decoder
    from spark.summary import ObservedBatch, ObservedColumns

    decoder = Decoder(snapshot)
    user, trailing, _ = decoder.columns()
    provenance = ["schema_id", F.col("topic").alias("kafka_topic"), F.col("partition").alias("kafka_partition"),
                  F.col("offset").alias("kafka_offset"), F.col("timestamp").alias("kafka_timestamp")]
    written = ["user.*", "schema_id", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"]
    counts, counts_and_keys = ObservedColumns(partitions, check_keys=False), ObservedColumns(partitions, check_keys=True)
    batch_ids = iter(range(1_000_000))

    def observed(columns):
        return lambda: decoder.good_rows(ObservedBatch(decoder.decode(decoder.with_header(raw)), next(batch_ids), columns).frame)

    return {
        STEPS[1]: lambda: decoder.with_header(raw).select(user.alias("user"), *provenance).select(*written),
        STEPS[2]: lambda: (decoder.with_header(raw).select(user.alias("user"), trailing.alias("_trailing"), *provenance)
                           .where("_trailing is null").select(*written)),
        STEPS[3]: observed(counts),
        STEPS[4]: observed(counts_and_keys),
    }


def run_steps(records: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Time every step's write, round-robin; return the result record."""
    from spark.sink import CassandraSink

    base = load_settings()
    clock = CpuClock(read_pid_file(Layout(base.stack_home).pidfile("cassandra")))
    with cached_batch(records, "sink-steps", base.spark_master) as batch:
        raw = batch.raw
        partitions = frozenset((r.topic, r.partition) for r in raw.select("topic", "partition").distinct().collect())
        frames = {STEPS[0]: lambda: batch.decoded, **step_frames(raw, batch.snapshot, partitions)}
        options = CassandraSink(batch.settings).write_options()
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in frames}

        def write(name: str) -> Callable[[], None]:
            def action() -> None:
                before = clock.read()
                batch.connector_write(frames[name](), options)
                after = clock.read()
                cpu[name].append((after[0] - before[0], after[1] - before[1]))
            return action

        seconds = interleaved({name: write(name) for name in frames}, batch.truncate, repeats, warmup)
    return summary(records, repeats, warmup, seconds, {name: values[warmup:] for name, values in cpu.items()})


def summary(records: int, repeats: int, warmup: int, seconds: dict[str, list[float]],
            cpu: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """Medians per step, and each step's rows/s as a ratio of the cached rows' (the connector alone)."""
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    baseline = medians[STEPS[0]]
    return {
        "benchmark": "sink_steps",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "records": records, "repeats": repeats, "warmup_rounds": warmup,
        "seconds": seconds,
        "steps": [{"step": name, "seconds": round(medians[name], 3), "rows_per_second": round(records / medians[name], 1),
                   "vs_connector": round(baseline / medians[name], 3),
                   "cassandra_cpu_seconds": round(statistics.median(c for c, _ in cpu[name]), 2),
                   "spark_cpu_seconds": round(statistics.median(m for _, m in cpu[name]), 2)} for name in seconds],
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"sink_steps: {result['records']} records, median of {result['repeats']} after {result['warmup_rounds']} warm-up rounds",
             f"{'rows the connector writes':<34}{'seconds':>9}{'rows/s':>10}{'vs 1.':>7}{'CPU-s Cassandra':>17}{'CPU-s Spark':>13}"]
    lines += [f"{step['step']:<34}{step['seconds']:>9.2f}{step['rows_per_second']:>10,.0f}{step['vs_connector']:>7.2f}"
              f"{step['cassandra_cpu_seconds']:>17.2f}{step['spark_cpu_seconds']:>13.2f}" for step in result["steps"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink_steps", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="users to produce and write (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per step (default 5)")
    parser.add_argument("--warmup", type=int, default=WARMUP_ROUNDS, help=f"untimed rounds first (default {WARMUP_ROUNDS})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.records < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--records and --repeats must be >= 1, --warmup >= 0")
    result = run_steps(args.records, args.repeats, args.warmup)
    write_result("sink_steps", result, render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
