"""Where does the producer's time go? transform vs AvroSerializer vs produce, and a pyinstrument profile.

Usage:
    python -m bench.profile_producer                  # 20000 users
    python -m bench.profile_producer --users 5000

One run on a private topic and subject (deleted afterwards). The raw API
records are fetched over HTTP from the data source first (not measured). Then:
  1. each stage alone, on the same users: transform(); the AvroSerializer the
     publisher uses (to_dict + registry lookups + schema rules + fastavro);
     the alternative of fastavro.schemaless_writer behind the same 5-byte
     header with the schema id looked up once; produce() + poll(0) of the
     already serialized values, then flush();
  2. the whole publish stage (transform + publish + finish) under
     pyinstrument; the profile's text goes to
     bench/results/profile_producer-<UTC time>.txt.
pyinstrument is a profiling tool, not a project dependency:
`.venv/bin/pip install pyinstrument` if it is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import io
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka.serialization import MessageField, SerializationContext

from bench.corner import BenchCorner
from bench.yardstick import parsed_user_schema
from core.settings import REPO_ROOT, Settings, load_settings
from producer import publish as publish_stage
from producer import source as source_stage
from producer.registry import make_client
from producer.transform import User, transform, user_to_avro

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def fetch_raw(settings: Settings, users: int) -> list[dict]:
    """Raw API records over HTTP, as the pipeline gets them."""
    session = source_stage.make_session(settings.datasource_retries, settings.datasource_backoff_factor)
    try:
        return [raw for batch in source_stage.fetch_batches(session, settings.datasource_url, users, min(users, 5000),
                                                            "bench-profile", timeout=settings.datasource_timeout_seconds)
                for raw in batch.records]
    finally:
        session.close()


def timed(action) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def stage_times(settings: Settings, subject: str, schema_id: int, raws: list[dict]) -> dict[str, float]:
    """Seconds per stage for all users, each stage alone."""
    now = dt.datetime.now(dt.timezone.utc)
    seconds: dict[str, float] = {}
    seconds["transform"], results = timed(lambda: [transform(raw, now) for raw in raws])
    users = [u for u in results if isinstance(u, User)]
    serializer, _ = publish_stage.user_serializer(make_client(settings), subject, "latest")
    ctx = SerializationContext(settings.users_topic, MessageField.VALUE)
    serializer(users[0], ctx)  # warm the registry cache
    seconds["AvroSerializer (to_dict + lookups + rules + fastavro)"], values = timed(lambda: [serializer(u, ctx) for u in users])
    parsed = parsed_user_schema()
    header = struct.pack(">bI", 0, schema_id)

    def schemaless() -> list[bytes]:
        out = []
        for user in users:
            buffer = io.BytesIO(header)
            buffer.seek(5)
            fastavro.schemaless_writer(buffer, parsed, user_to_avro(user))
            out.append(buffer.getvalue())
        return out

    seconds["alternative: user_to_avro + fastavro.schemaless_writer"], fast_values = timed(schemaless)
    if fast_values != values:
        raise RuntimeError("fastavro.schemaless_writer and AvroSerializer disagree on the bytes; the comparison is void")
    producer = publish_stage.make_producer(settings)
    report = publish_stage.DeliveryReport()

    def produce() -> None:
        for user, value in zip(users, values):
            while True:
                try:
                    producer.produce(settings.users_topic, key=user.id.encode(), value=value, on_delivery=report)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.1)
            producer.poll(0)
        publish_stage.finish(producer, report)

    seconds["produce + poll + flush (pre-serialized)"], _ = timed(produce)
    return {name: round(value, 3) for name, value in seconds.items()}


def profile_pipeline(settings: Settings, subject: str, raws: list[dict]) -> tuple[float, str]:
    """The publish stage end to end under pyinstrument: (seconds, the profile as text)."""
    from pyinstrument import Profiler

    serializer, _ = publish_stage.user_serializer(make_client(settings), subject, "latest")
    producer = publish_stage.make_producer(settings)
    report = publish_stage.DeliveryReport()
    now = dt.datetime.now(dt.timezone.utc)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    started = time.perf_counter()
    publish_stage.publish(producer, serializer, ((raw, transform(raw, now)) for raw in raws), topic=settings.users_topic,
                          dead_letter_topic=settings.dead_letter_topic, source="bench.profile_producer", report=report)
    publish_stage.finish(producer, report)
    seconds = time.perf_counter() - started
    profiler.stop()
    return seconds, profiler.output_text(unicode=True, color=False, show_all=True)


def run_profile(users: int, base: Settings) -> tuple[dict[str, Any], str]:
    with tempfile.TemporaryDirectory(prefix="bench-profile-producer-") as scratch, \
            BenchCorner(base, "pprof", Path(scratch), keyspace=False) as corner:
        raws = fetch_raw(corner.settings, users)
        stages = stage_times(corner.settings, corner.subject, corner.schema_id, raws)
        pipeline_seconds, text = profile_pipeline(corner.settings, corner.subject, raws)
    return {
        "benchmark": "profile_producer",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "users": len(raws),
        "stage_seconds": stages,
        "stage_users_per_s": {name: round(len(raws) / s) for name, s in stages.items()},
        "pipeline_seconds_under_profiler": round(pipeline_seconds, 3),
    }, text


def render(result: dict[str, Any]) -> str:
    lines = [f"profile_producer: {result['users']:,} users, each stage alone"]
    for name, seconds in result["stage_seconds"].items():
        lines.append(f"  {name:<58}{seconds:>8.2f} s {result['stage_users_per_s'][name]:>10,} users/s")
    lines.append(f"  whole publish stage under pyinstrument: {result['pipeline_seconds_under_profiler']:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_producer", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.users < 100:
        parser.error("--users must be >= 100")
    if importlib.util.find_spec("pyinstrument") is None:  # checked first: the profile runs last
        parser.error("needs pyinstrument, a profiling tool the project does not pin: `.venv/bin/pip install pyinstrument`")
    result, text = run_profile(args.users, load_settings())
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"profile_producer-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".txt").write_text(text, encoding="utf-8")
    print(render(result))
    print(f"results: {stem.relative_to(REPO_ROOT)}.json, profile: {stem.relative_to(REPO_ROOT)}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
