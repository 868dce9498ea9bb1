"""The load bench: pacing, the per-step verdict, and one short real run against the stack and the real job."""

from __future__ import annotations

import argparse
import time

import psutil
import pytest
from confluent_kafka.admin import AdminClient

from bench import load
from core import cassandra_schema
from core.settings import load_settings


class FakeUser:
    def __init__(self, i: int):
        self.id = f"id-{i}"


def test_paced_offers_the_rate_and_stops_at_the_duration():
    ids: list[str] = []
    started = time.perf_counter()
    pairs = list(load.paced((FakeUser(i) for i in range(10_000)), rate=200, duration=0.5, ids=ids))
    elapsed = time.perf_counter() - started
    assert 90 <= len(pairs) <= 101, "about rate x duration records, never more"
    assert ids == [user.id for _, user in pairs]
    assert 0.45 <= elapsed < 0.7


def step(published_rate: float, growth: float, drain: float | None, ids: list[str]) -> dict:
    return {"offered_users_per_s": 1000, "published": len(ids), "published_users_per_s": published_rate,
            "started": 0.0, "ended": 60.0, "lag_at_end": 0, "lag_growth_per_s": growth, "drain_seconds": drain,
            "resources": {}, "ids": list(ids)}


LIMITS = argparse.Namespace(freshness_p95=3.0, max_lag_growth=0.05)
IDS = [f"id-{i}" for i in range(100)]


def landed(freshness: float, ids=IDS) -> dict[str, tuple[float, float]]:
    return {i: (10.0 + n * 0.01, 10.0 + n * 0.01 + freshness) for n, i in enumerate(ids)}


def test_a_step_that_keeps_up_is_sustained():
    summary = load.summarize_step(step(995, 3.0, 4.0, IDS), landed(1.0), LIMITS, {}, 100.0)
    assert summary["sustained"] and summary["freshness_seconds"]["p95"] == pytest.approx(1.0)
    assert summary["landed"] == 100 and summary["missing"] == 0


@pytest.mark.parametrize("published, growth, drain, freshness, failed", [
    (500, 0.0, 4.0, 1.0, "reached_offered_rate"),   # the publisher could not offer the rate
    (995, 200.0, 4.0, 1.0, "lag_bounded"),          # lag grew by 20 % of the rate
    (995, 0.0, None, 1.0, "lag_bounded"),           # the step never drained
    (995, 0.0, 4.0, 3.5, "fresh_enough"),           # p95 freshness over the limit
])
def test_a_step_that_falls_behind_is_not_sustained(published, growth, drain, freshness, failed):
    summary = load.summarize_step(step(published, growth, drain, IDS), landed(freshness), LIMITS, {}, 100.0)
    assert not summary["sustained"] and not summary[failed]


def test_rows_that_never_landed_make_the_high_percentiles_unknown():
    summary = load.summarize_step(step(995, 0.0, 4.0, IDS), landed(1.0, IDS[:90]), LIMITS, {}, 100.0)
    assert summary["missing"] == 10
    assert summary["freshness_seconds"]["p50"] == pytest.approx(1.0)
    assert summary["freshness_seconds"]["p95"] is None and not summary["sustained"]


def test_the_warm_up_runs_at_the_first_rate_and_a_backlog_it_leaves_skips_every_step(monkeypatch):
    runs = []

    def fake_step(rate, duration, pool, offset, *_):
        runs.append((rate, duration, offset))
        return {"published": 10, "drain_seconds": None if duration == 7 else 1.0}

    monkeypatch.setattr(load, "run_step", fake_step)
    args = load.parse_args(["--steps", "300,600", "--duration", "20", "--warmup-seconds", "9", "--warmup", "50"])
    warmup, steps, skipped = load.run_steps(args, [], None, None, None)
    assert runs == [(300, 9, 50), (300, 20, 60), (600, 20, 70)] and len(steps) == 2 and not skipped
    runs.clear()
    warmup, steps, skipped = load.run_steps(load.parse_args(["--steps", "300,600", "--warmup-seconds", "7"]), [], None, None, None)
    assert runs == [(300, 7, 2000)] and warmup["drain_seconds"] is None and steps == [] and skipped == [300, 600]


def test_the_warm_up_is_shown_but_never_judged():
    warm = load.summarize_step(step(995, 0.0, 4.0, IDS), landed(9.0), LIMITS, {}, 100.0)
    kept = load.summarize_step(step(995, 0.0, 4.0, IDS), landed(1.0), LIMITS, {}, 100.0)
    result = {"settings": {"duration_seconds": 60, "trigger": "1 second", "freshness_p95_limit": 3.0, "drain_timeout": 300},
              "warmup": warm, "steps": [kept], "skipped_steps": [], "highest_sustained_users_per_s": 1000,
              "topic_bytes_per_user": 180.0}
    table = load.render(result).splitlines()
    assert table[2].split()[:2] == ["w", "1,000"] and "warm-up, not judged" in table[2]
    assert table[3].endswith("sustained")


def test_job_conf_must_be_a_spark_setting():
    assert load.conf_pair("spark.cassandra.output.concurrent.writes=10") == ("spark.cassandra.output.concurrent.writes", "10")
    with pytest.raises(argparse.ArgumentTypeError):
        load.conf_pair("concurrent.writes=10")


@pytest.mark.integration
@pytest.mark.spark
def test_a_short_load_run_lands_every_user_and_leaves_nothing_behind():
    """One 8 s step at 100 users/s through the real job: every published user landed, freshness measured, cleaned up."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    args = load.parse_args(["--steps", "100", "--duration", "6", "--warmup-seconds", "5", "--pool", "300", "--warmup", "100",
                            "--drain-timeout", "240", "--trigger", "1 second"])
    result = load.run_load(args, load_settings(), "test")
    [only] = result["steps"]
    warmup = result["warmup"]
    assert result["yardstick_fastavro_users_per_s"] > 1_000
    assert warmup["offered_users_per_s"] == 100 and warmup["published"] >= 400 and warmup["landed"] == warmup["published"]
    assert warmup["ended"] <= only["started"], "the warm-up runs before the first step"
    assert result["topic_bytes_per_user"] and "w 100" in load.render(result)
    assert only["published"] >= 500 and only["landed"] == only["published"] and only["missing"] == 0
    assert 0 < only["freshness_seconds"]["p50"] <= only["freshness_seconds"]["p95"] <= only["freshness_seconds"]["p99"]
    assert only["batches"] and sum(b["rows_written"] for b in only["batches"]) >= only["published"] - 100
    assert only["resources"]["stream job"]["rss_mb_max"] > 100, "the job's process tree was sampled"
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before, "the job's processes were left running"
    with cassandra_schema.connect(load_settings()) as session:
        keyspaces = {row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    assert result["corner"]["keyspace"] not in keyspaces, "the bench's keyspace was left behind"
    topics = AdminClient(load_settings().kafka_config()).list_topics(timeout=10).topics
    assert result["corner"]["topic"] not in topics, "the bench's topic was left behind"
