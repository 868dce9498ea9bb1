"""What does the producer's safety cost? Users/s of transform+serialize+publish vs a bare Avro produce loop.

Usage:
    python -m bench                                   # all benches (make bench starts the stack first)
    python -m bench.producer_bench --users 20000 --repeats 3

One run, on a private topic and subject of the stack (deleted afterwards):
  1. generate N raw API records with the data source's generator (no HTTP:
     fetching is not what is measured) and register schemas/user.avsc;
  2. "pipeline": producer.transform.transform() of each raw record, then
     producer.publish.publish() (confluent-kafka AvroSerializer with the
     registered schema, idempotent producer, delivery reports), then finish();
  3. "raw": the same records already mapped to Avro dicts, written with
     fastavro.schemaless_writer behind the 5-byte Confluent header and handed
     to Producer.produce() in a plain loop, then flush(); the same producer
     settings, so only our code differs;
Each round times the pipeline, then the raw loop, `--repeats` times (5).
The rates are medians; the ratio pipeline/raw is paired round by round
(bench/stats.py: the median of the rounds' ratios, lowest and highest
beside it), since a round's two loops share the machine's state at that
moment. It says how much throughput validation, the mapping and the
serializer cost.
Also reported: Avro bytes per user (payload, and with the header) against
the same fields as JSON, and against the API's own JSON record.
Results are printed as a table and written to bench/results/producer_bench-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import statistics
import struct
import sys
import time
import uuid
from typing import Any

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from bench.stats import paired_ratio
from bench.yardstick import parsed_user_schema
from core.settings import REPO_ROOT, Settings, load_settings
from core.subjects import USER_SCHEMA_FILE
from producer import publish as publish_stage
from producer.register import register_all
from producer.registry import make_client
from producer.transform import User, transform, user_to_avro
from standin.randomuser import ALL_NATS, generate

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def raw_records(users: int) -> list[dict]:
    """N API records in pages of 5000, like a real fetch would get them."""
    records: list[dict] = []
    page = 1
    while len(records) < users:
        records += generate("bench", page, 5000, ALL_NATS)
        page += 1
    return records[:users]


def run_pipeline(producer: Producer, serializer, raws: list[dict], settings: Settings) -> float:
    """transform + AvroSerializer + produce + all delivery reports; returns seconds."""
    report = publish_stage.DeliveryReport()
    started = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc)
    results = ((raw, transform(raw, now)) for raw in raws)
    publish_stage.publish(producer, serializer, results, topic=settings.users_topic,
                          dead_letter_topic=settings.dead_letter_topic, source="bench", report=report)
    publish_stage.finish(producer, report)
    elapsed = time.perf_counter() - started
    if report.delivered.get(settings.users_topic) != len(raws):
        raise RuntimeError(f"pipeline delivered {report.delivered}, expected {len(raws)} users")
    return elapsed


def run_raw(producer: Producer, parsed_schema: Any, schema_id: int, records: list[dict], topic: str) -> float:
    """The floor: header + fastavro.schemaless_writer + produce; returns seconds."""
    header = struct.pack(">bI", 0, schema_id)
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)

    started = time.perf_counter()
    for record in records:
        buffer = io.BytesIO()
        buffer.write(header)
        fastavro.schemaless_writer(buffer, parsed_schema, record)
        while True:
            try:
                producer.produce(topic, key=record["id"].encode(), value=buffer.getvalue(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - started
    if remaining or failed:
        raise RuntimeError(f"raw loop: {remaining} undelivered, {len(failed)} failed ({failed[:1]})")
    return elapsed


def sizes(raws: list[dict], users: list[User], parsed_schema: Any) -> dict[str, float]:
    """Mean bytes per user: Avro payload, Avro + 5-byte header, the same fields as JSON, the API's JSON."""
    avro = []
    for user in users:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed_schema, user_to_avro(user))
        avro.append(len(buffer.getvalue()))
    as_json = [len(json.dumps(user_to_avro(u), default=lambda v: v.isoformat(), ensure_ascii=False).encode())
               for u in users]
    api_json = [len(json.dumps(raw, ensure_ascii=False).encode()) for raw in raws]
    return {
        "avro_payload": statistics.mean(avro),
        "avro_with_header": statistics.mean(avro) + 5,
        "json_same_fields": statistics.mean(as_json),
        "api_json_record": statistics.mean(api_json),
    }


def run_bench(users: int, repeats: int, settings: Settings) -> dict[str, Any]:
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    settings = settings.model_copy(update={"users_topic": topic, "dead_letter_topic": f"{topic}.dead_letter"})
    [registration] = register_all(settings, [USER_SCHEMA_FILE])
    client = make_client(settings)
    admin = AdminClient(settings.kafka_config())
    publish_stage.ensure_topics(admin, {topic: settings.users_topic_partitions, f"{topic}-raw": settings.users_topic_partitions,
                                        settings.dead_letter_topic: 1}, settings.users_topic_replication)
    try:
        raws = raw_records(users)
        now = dt.datetime.now(dt.timezone.utc)
        mapped = [transform(raw, now) for raw in raws]
        if not all(isinstance(u, User) for u in mapped):
            raise RuntimeError("the generator produced records the transform rejects; fix that first")
        avro_records = [user_to_avro(u) for u in mapped]
        parsed_schema = parsed_user_schema()
        serializer, registered = publish_stage.user_serializer(client, registration.subject, "latest")
        producer = publish_stage.make_producer(settings)

        # Warm-up: connections, the serializer's schema cache, librdkafka's idempotent PID.
        run_pipeline(producer, serializer, raws[:500], settings)
        run_raw(producer, parsed_schema, registered.schema_id, avro_records[:500], f"{topic}-raw")

        pipeline_s, raw_s = [], []
        for _ in range(repeats):
            pipeline_s.append(run_pipeline(producer, serializer, raws, settings))
            raw_s.append(run_raw(producer, parsed_schema, registered.schema_id, avro_records, f"{topic}-raw"))
        return {
            "bench": "producer",
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus()},
            "users": users,
            "repeats": repeats,
            "pipeline_seconds": pipeline_s,
            "raw_seconds": raw_s,
            **rates_and_ratio(users, pipeline_s, raw_s),
            "bytes_per_user": {k: round(v, 1) for k, v in sizes(raws, mapped, parsed_schema).items()},
            "schema_id": registered.schema_id,
        }
    finally:
        for future in admin.delete_topics([topic, f"{topic}-raw", settings.dead_letter_topic],
                                          operation_timeout=30).values():
            future.result()
        client.delete_subject(registration.subject)
        client.delete_subject(registration.subject, permanent=True)


def rates_and_ratio(users: int, pipeline_s: list[float], raw_s: list[float]) -> dict[str, Any]:
    """Median users/s of each loop, and pipeline/raw paired round by round (median, with the rounds' range)."""
    ratio = paired_ratio(pipeline_s, raw_s)
    return {
        "pipeline_users_per_s": round(users / statistics.median(pipeline_s)),
        "raw_users_per_s": round(users / statistics.median(raw_s)),
        "ratio_pipeline_to_raw": ratio["median"],
        "ratio_rounds": {"min": ratio["min"], "max": ratio["max"]},
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def render(result: dict[str, Any]) -> str:
    size = result["bytes_per_user"]
    rows = [
        ("pipeline: transform + AvroSerializer + produce", f"{result['pipeline_users_per_s']:>10,} users/s"),
        ("raw: fastavro.schemaless_writer + produce", f"{result['raw_users_per_s']:>10,} users/s"),
        ("ratio pipeline / raw, paired (median of rounds)", f"{result['ratio_pipeline_to_raw']:>10.2f}"),
        ("  rounds, lowest to highest", f"{result['ratio_rounds']['min']:>10.2f} to {result['ratio_rounds']['max']:.2f}"),
        ("Avro payload per user", f"{size['avro_payload']:>10.1f} bytes"),
        ("Avro + 5-byte header per user", f"{size['avro_with_header']:>10.1f} bytes"),
        ("same fields as JSON per user", f"{size['json_same_fields']:>10.1f} bytes"),
        ("Avro / JSON size", f"{size['avro_with_header'] / size['json_same_fields']:>10.2f}"),
        ("API's JSON record per user", f"{size['api_json_record']:>10.1f} bytes"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"producer bench: {result['users']:,} users, {result['repeats']} rounds"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run, print the table, write the JSON; return the result."""
    parser = argparse.ArgumentParser(prog="python -m bench.producer_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5, help="rounds, each timing both loops (default 5)")
    args = parser.parse_args(argv)
    if args.users < 500 or args.repeats < 1:
        parser.error("--users must be >= 500 and --repeats >= 1")
    result = run_bench(args.users, args.repeats, load_settings())
    print(render(result))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"producer_bench-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path.relative_to(REPO_ROOT)}")
    return result


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
