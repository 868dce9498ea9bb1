"""At which offered load does the real stream fall behind? Freshness, landed rows/s and lag per step of load.

Usage:
    python -m bench.load                        # steps 500,1000,2000,3000,4000,8000 users/s, 60 s each
    python -m bench.load --quick                # the same steps, 15 s each
    python -m bench.load --steps 500,1000 --duration 30 --freshness-p95 3
    python -m bench.load --trigger "1 second" --job-conf spark.cassandra.output.concurrent.writes=10

One run, on a private corner of the shared stack (topic, subject, keyspace,
checkpoint, consumer group; all removed afterwards):
  1. fetch a pool of users from the data source over HTTP and transform
     them (bench/users.py); each published record is a pool user with a new
     id, so every record is its own Cassandra row;
  2. start the real job, `python -m spark.stream_job`, as a subprocess on
     the corner's names, and warm it up: a first batch, then a warm-up step
     at the first step's rate (--warmup-seconds), measured and shown like a
     step but never judged. Why: right after a start, Cassandra's and the
     job's JVMs still compile their hot code, and on 2 cores that competes
     with the work (batches of 9,000 rows took 9 s for the first 30 s of a
     step at 1,000 users/s, then 0.6 s); a step should measure the stream
     running, and the warm-up row shows what a cold start costs;
  3. for each step: publish at the offered rate for the step's duration
     through the project's publisher (producer.publish: AvroSerializer,
     idempotent producer, delivery reports), while bench/monitor.py samples
     lag, batches and every process's CPU and memory once a second; then
     wait (bounded) for the job to drain the step before the next one;
  4. read every row's WRITETIME and Kafka timestamp back from Cassandra:
     freshness = WRITETIME(username) - the record's Kafka timestamp.

A step is "sustained" when the publisher really offered the rate (>= 90 %),
the lag did not grow (least-squares slope <= --max-lag-growth x rate), the
step drained, and p95 freshness <= --freshness-p95 seconds. Results: a
table, bench/results/load-<UTC time>.json, a plot (.png) and the job's log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cassandra.query import SimpleStatement

from bench import plot, stats
from bench.corner import BenchCorner
from bench.job import StreamJob
from bench.monitor import Monitor
from bench.size import segment_bytes
from bench.users import fetch_pool, fresh_users
from bench.yardstick import fastavro_users_per_second
from core import cassandra_schema
from core.settings import REPO_ROOT, Settings, load_settings
from producer import publish as publish_stage
from producer.registry import make_client
from producer.transform import User
from spark.progress import progress_path

RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_STEPS = (500, 1000, 2000, 3000, 4000, 8000)  # the issue's steps and its 3,000 users/s target
REACHED = 0.9  # a step counts only if the publisher offered at least this share of its rate
YARDSTICK_USERS = 5000  # users the CPU yardstick serializes per pass (about 0.15 s here)


def paced(users: Iterator[User], rate: float, duration: float, ids: list[str]) -> Iterator[tuple[None, User]]:
    """(raw, User) pairs for publish(), the i-th not before start + i/rate; stops after `duration` seconds."""
    start = time.perf_counter()
    for i, user in enumerate(users):
        now = time.perf_counter()
        if now - start >= duration:
            return
        due = start + i / rate
        if due > now:
            time.sleep(due - now)
        ids.append(user.id)
        yield None, user


class Publisher:
    """The project's own publish stage, bound to the corner's topic and subject."""

    def __init__(self, settings: Settings, subject: str):
        self.settings = settings
        self.serializer, _ = publish_stage.user_serializer(make_client(settings), subject, "latest")
        self.producer = publish_stage.make_producer(settings)

    def publish(self, pairs: Iterator[tuple[None, User]]) -> None:
        """Publish and wait for every delivery report (raises PublishError on any failure)."""
        report = publish_stage.DeliveryReport()
        publish_stage.publish(self.producer, self.serializer, pairs, topic=self.settings.users_topic,
                              dead_letter_topic=self.settings.dead_letter_topic, source="bench.load", report=report)
        publish_stage.finish(self.producer, report)


def wait_drained(monitor: Monitor, job: StreamJob, since: float, timeout: float) -> float | None:
    """Seconds until a sample taken after `since` shows no lag; None if `timeout` passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        monitor.check()
        job.check_alive()
        latest = monitor.samples[-1] if monitor.samples else None
        if latest and latest["t"] > since and latest["lag"] == 0:
            return round(latest["t"] - since, 1)
        time.sleep(0.5)
    return None


def run_step(rate: int, duration: float, pool: list[User], offset: int, publisher: Publisher, monitor: Monitor,
             job: StreamJob, drain_timeout: float) -> dict[str, Any]:
    """Publish at `rate` for `duration` s, then wait for the job to drain; returns the step's raw record."""
    ids: list[str] = []
    started = time.time()
    publisher.publish(paced(fresh_users(pool, int(rate * duration), offset), rate, duration, ids))
    ended = time.time()
    drained = wait_drained(monitor, job, ended, drain_timeout)
    after = [s for s in monitor.samples if s["t"] >= ended]
    return {
        "offered_users_per_s": rate,
        "published": len(ids),
        "published_users_per_s": round(len(ids) / (ended - started), 1),
        "started": started,
        "ended": ended,
        "lag_at_end": after[0]["lag"] if after else None,
        "lag_growth_per_s": stats.lag_growth(monitor.window(started, ended)),
        "drain_seconds": drained,
        "resources": stats.resources(monitor.window(started, ended)),
        "ids": ids,
    }


def landed_rows(settings: Settings) -> dict[str, tuple[float, float]]:
    """Every row of the corner's table: id -> (Kafka timestamp, Cassandra write time), in epoch seconds."""
    table = f"{settings.cassandra_keyspace}.{settings.cassandra_table}"
    query = SimpleStatement(f"SELECT id, toUnixTimestamp(kafka_timestamp) AS ts_ms, writetime(username) AS wt_us "
                            f"FROM {table}", fetch_size=5000)
    with cassandra_schema.connect(settings) as session:
        return {str(row.id): (row.ts_ms / 1e3, row.wt_us / 1e6) for row in session.execute(query, timeout=120)}


def summarize_step(step: dict[str, Any], rows: dict[str, tuple[float, float]], limits: argparse.Namespace,
                   batches: dict[int, dict[str, Any]], until: float) -> dict[str, Any]:
    """Freshness percentiles, landing rate, batches and the sustained verdict of one step."""
    ids = step.pop("ids")
    found = [rows[i] for i in ids if i in rows]
    freshness = sorted(wt - ts for ts, wt in found)
    missing = len(ids) - len(found)
    pct = {f"p{p}": stats.percentile(freshness, missing, p) for p in (50, 95, 99)}
    rate = step["offered_users_per_s"]
    reached = step["published_users_per_s"] >= REACHED * rate
    bounded = step["drain_seconds"] is not None and step["lag_growth_per_s"] <= limits.max_lag_growth * rate
    fresh = pct["p95"] is not None and pct["p95"] <= limits.freshness_p95
    in_step = [b for b in batches.values() if step["started"] <= b["seen_at"] <= until]
    return {
        **step,
        "landed": len(found),
        "missing": missing,
        "freshness_seconds": {**pct, "max": round(freshness[-1], 3) if freshness and not missing else None},
        "landed_rows_per_s": stats.landing_rate([wt for _, wt in found]),
        "batches": [{k: b[k] for k in ("records_in", "rows_written", "duration_seconds")} for b in in_step],
        "reached_offered_rate": reached,
        "lag_bounded": bounded,
        "fresh_enough": fresh,
        "sustained": reached and bounded and fresh,
    }


def run_steps(args: argparse.Namespace, pool: list[User], publisher: Publisher, monitor: Monitor,
              job: StreamJob) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[int]]:
    """The warm-up step (None without one), the steps' raw records, and the rates skipped behind a backlog."""
    offset, warmup, steps, skipped = args.warmup, None, [], []
    if args.warmup_seconds:
        print(f"warm-up: {args.steps[0]} users/s for {args.warmup_seconds:.0f} s ...", file=sys.stderr, flush=True)
        warmup = run_step(args.steps[0], args.warmup_seconds, pool, offset, publisher, monitor, job, args.drain_timeout)
        offset += warmup["published"]
    for rate in args.steps:
        previous = steps[-1] if steps else warmup
        if previous is not None and previous["drain_seconds"] is None:
            skipped.append(rate)  # the backlog of the last step would pollute this one
            continue
        print(f"step: {rate} users/s for {args.duration:.0f} s ...", file=sys.stderr, flush=True)
        steps.append(run_step(rate, args.duration, pool, offset, publisher, monitor, job, args.drain_timeout))
        offset += steps[-1]["published"]
    return warmup, steps, skipped


def run_load(args: argparse.Namespace, base: Settings, stamp: str) -> dict[str, Any]:
    """The whole run; returns the result record (without writing it)."""
    job_args = [*(["--trigger", args.trigger] if args.trigger else []),
                *(["--max-offsets-per-trigger", str(args.max_offsets_per_trigger)] if args.max_offsets_per_trigger else [])]
    log_path = RESULTS_DIR / f"load-{stamp}-job.log"
    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch, \
            BenchCorner(base, "load", Path(scratch)) as corner:
        s = corner.settings
        pool = fetch_pool(s, args.pool)
        yardstick = fastavro_users_per_second(pool[:YARDSTICK_USERS])  # before the job starts: the machine alone
        publisher = Publisher(s, corner.subject)
        with StreamJob(corner.job_env(), log_path, job_args, dict(args.job_conf)) as job:
            job.wait_started(args.start_timeout)
            with Monitor(s, progress_path(s.spark_checkpoint_dir), job.tree) as monitor:
                warm_ids: list[str] = []
                publisher.publish(paced(fresh_users(pool, args.warmup), 1e9, 3600, warm_ids))
                if wait_drained(monitor, job, time.time(), args.start_timeout) is None:
                    raise RuntimeError(f"the job did not write the {args.warmup} warm-up users in {args.start_timeout:.0f} s; "
                                       f"see {log_path}")
                warmup, steps, skipped = run_steps(args, pool, publisher, monitor, job)
                batches = dict(monitor.batches)
            rows = landed_rows(s)
            topic_bytes = segment_bytes(s.stack_home / "data" / "kafka", s.users_topic)
    measured = ([warmup] if warmup else []) + steps
    ends = [step["started"] for step in measured[1:]] + [time.time()]
    summaries = [summarize_step(step, rows, args, batches, end) for step, end in zip(measured, ends)]
    warmup_summary = summaries.pop(0) if warmup else None
    sustained = [step["offered_users_per_s"] for step in summaries if step["sustained"]]
    published = args.warmup + sum(step["published"] for step in measured)
    return {
        "benchmark": "load",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"steps": list(args.steps), "duration_seconds": args.duration, "pool": args.pool,
                     "warmup_seconds": args.warmup_seconds, "freshness_p95_limit": args.freshness_p95,
                     "max_lag_growth": args.max_lag_growth,
                     "drain_timeout": args.drain_timeout, "job_args": job_args, "job_conf": dict(args.job_conf),
                     "trigger": args.trigger or base.spark_trigger_interval},
        "corner": {"topic": s.users_topic, "keyspace": s.cassandra_keyspace, "subject": corner.subject},
        # This machine's speed at the start (bench/yardstick.py): compare two runs' steps only beside it.
        "yardstick_fastavro_users_per_s": yardstick,
        # Measured like a step, never judged: what a cold start costs (see the docstring).
        "warmup": warmup_summary,
        "steps": summaries,
        "skipped_steps": skipped,
        "highest_sustained_users_per_s": max(sustained) if sustained else None,
        "topic_bytes_per_user": round(topic_bytes / published, 1) if published else None,
        "job_log": str(log_path.relative_to(REPO_ROOT)),
    }


def render(result: dict[str, Any]) -> str:
    """The result as a text table, one line per step."""
    head = (f"{'offered':>8} {'published':>10} {'landed/s':>9} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} "
            f"{'lag end':>8} {'lag +/s':>8} {'drain s':>8} {'job cores':>9} {'pub cores':>9} {'all cores':>9} {'load':>5}  verdict")
    lines = [f"load bench: {result['settings']['duration_seconds']:.0f} s steps, trigger {result['settings']['trigger']}; "
             f"machine yardstick: fastavro {result.get('yardstick_fastavro_users_per_s') or 0:,.0f} users/s", head]
    show = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    warmup = result.get("warmup")
    for step in ([warmup] if warmup else []) + result["steps"]:
        f, res = step["freshness_seconds"], step["resources"]
        cores = lambda group: res.get(group, {}).get("cores", 0.0)  # noqa: E731
        verdict = "warm-up, not judged (JVMs compiling)" if step is warmup else "sustained" if step["sustained"] else ", ".join(
            why for ok, why in ((step["reached_offered_rate"], "publisher below rate"),
                                (step["lag_bounded"], "lag grows"), (step["fresh_enough"], "too stale")) if not ok)
        offered = f"w {step['offered_users_per_s']:,}" if step is warmup else f"{step['offered_users_per_s']:,}"
        lines.append(
            f"{offered:>8} {step['published_users_per_s']:>10,.0f} {show(step['landed_rows_per_s'], ',.0f'):>9} "
            f"{show(f['p50'], '.2f'):>7} {show(f['p95'], '.2f'):>7} {show(f['p99'], '.2f'):>7} "
            f"{show(step['lag_at_end'], ','):>8} {step['lag_growth_per_s']:>8,.0f} {show(step['drain_seconds'], '.0f'):>8} "
            f"{cores('stream job'):>9.2f} {cores('bench publisher'):>9.2f} {cores('machine (all processes)'):>9.2f} "
            f"{res.get('load average (1 min)', {}).get('mean', 0):>5.1f}  {verdict}")
    for rate in result["skipped_steps"]:
        lines.append(f"{rate:>8,}  skipped: the previous step did not drain within {result['settings']['drain_timeout']:.0f} s")
    best = result["highest_sustained_users_per_s"]
    lines.append(f"highest offered rate sustained (p95 freshness <= {result['settings']['freshness_p95_limit']} s, "
                 f"lag bounded): {best if best is not None else 'none'} users/s")
    lines.append(f"bytes per user in the topic's log segments: {result['topic_bytes_per_user']}")
    return "\n".join(lines)


def conf_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("spark."):
        raise argparse.ArgumentTypeError(f"expected spark.KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=lambda t: [int(x) for x in t.split(",")], default=list(DEFAULT_STEPS),
                        help="offered rates in users/s, comma separated (default 500,1000,2000,3000,4000,8000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per step (default 60)")
    parser.add_argument("--quick", action="store_true", help="15 s steps and a 120 s drain limit")
    parser.add_argument("--freshness-p95", type=float, default=3.0, help="p95 freshness a sustained step needs (s)")
    parser.add_argument("--max-lag-growth", type=float, default=0.05,
                        help="largest lag slope, as a share of the offered rate, a sustained step may have")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for a step's backlog")
    parser.add_argument("--pool", type=int, default=20_000, help="distinct users fetched from the data source")
    parser.add_argument("--warmup", type=int, default=2000, help="users written at once before the first step")
    parser.add_argument("--warmup-seconds", type=float, default=60.0,
                        help="then a warm-up step at the first step's rate, measured but not judged (default 60; "
                             "--quick 15; 0: none)")
    parser.add_argument("--trigger", help='the job\'s micro-batch interval, e.g. "1 second" (default: SPARK_TRIGGER_INTERVAL)')
    parser.add_argument("--max-offsets-per-trigger", type=int, help="passed to the job")
    parser.add_argument("--job-conf", type=conf_pair, action="append", default=[], metavar="spark.KEY=VALUE",
                        help="extra Spark setting for the job (repeatable)")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds for the job to start and warm up")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.drain_timeout = 15.0, min(args.drain_timeout, 120.0)
        args.warmup_seconds = min(args.warmup_seconds, 15.0)
    if not args.steps or min(args.steps) < 1 or args.duration < 5 or args.pool < 100:
        parser.error("--steps must be positive rates, --duration >= 5 s and --pool >= 100")
    if args.warmup_seconds and args.warmup_seconds < 5:
        parser.error("--warmup-seconds must be 0 (no warm-up step) or >= 5 s")
    return args


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run, print the table, write the JSON and the plot; return the result."""
    args = parse_args(argv)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result = run_load(args, load_settings(), stamp)
    path = RESULTS_DIR / f"load-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_path = plot.plot_load(result, path.with_suffix(".png"))
    print(render(result))
    print(f"results: {path.relative_to(REPO_ROOT)}, plot: {plot_path.relative_to(REPO_ROOT)}, job log: {result['job_log']}")
    return result


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
