"""How many bytes does a user cost on the broker's disk, per producer compression, against the seed's JSON?

Usage:
    python -m bench.size                     # 20000 users; part of `python -m bench`
    python -m bench.size --users 5000 --codecs none,zstd --slow-linger-ms 0

The same users (fetched from the data source and transformed once) are
published to one private topic per variant, and the broker's log segments
(`<partition dir>/*.log` under the Kafka data dir, `.stack/data/kafka/`) are
measured once every delivery is confirmed:
  * "avro-<codec>": the project's publisher (producer.publish, AvroSerializer,
    idempotent producer, its linger.ms) with compression.type = codec;
  * "avro-<codec> linger <N> ms": the same with a longer linger.ms
    (--slow-linger-ms, 0 to skip): a codec compresses a record batch, so
    fuller batches compress better, and how full they get depends on the
    publish rate against linger.ms;
  * "seed json": the seed's way, one JSON message per user, uncompressed, no
    key, each in its own record batch (the seed fetched and sent one user per
    API call, so no two users ever shared a batch);
  * "json batched": the same JSON, keyed, uncompressed, batched like ours, to
    show how much of the gain is batching rather than Avro or compression.
Each figure is bytes per user; the ratio is against "seed json" of the same run.
The broker's disk is only readable on the embedded stack (same machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from bench.corner import BenchCorner
from bench.report import write_result
from bench.users import fetch_pool
from core.settings import Settings, load_settings
from core.topics import ensure_topics
from producer import publish as publish_stage
from producer.registry import make_client
from producer.transform import User, user_to_avro

CODECS = ("none", "lz4", "zstd", "gzip", "snappy")
SEED = "seed json"


def segment_bytes(kafka_data_dir: Path, topic: str) -> int:
    """Bytes of the topic's log segments (`.log` files only: Kafka preallocates its index files)."""
    partition_dir = re.compile(rf"^{re.escape(topic)}-\d+$")  # not "<topic>-0.<id>-delete" nor another topic
    return sum(segment.stat().st_size for folder in kafka_data_dir.iterdir() if partition_dir.match(folder.name)
               for segment in folder.glob("*.log"))


def user_json(user: User) -> bytes:
    """The user's fields as one JSON document, dates as ISO text: what the seed put in each message."""
    return json.dumps(user_to_avro(user), default=lambda v: v.isoformat(), ensure_ascii=False).encode("utf-8")


def publish_avro(settings: Settings, subject: str, topic: str, users: list[User], codec: str,
                 linger_ms: int | None = None) -> None:
    """The project's publisher with one compression codec (and linger.ms); raises if any delivery failed."""
    serializer, _ = publish_stage.user_serializer(make_client(settings), subject, "latest")
    overrides = {"compression.type": codec, **({"linger.ms": linger_ms} if linger_ms else {})}
    producer = publish_stage.make_producer(settings, **overrides)
    report = publish_stage.DeliveryReport()
    publish_stage.publish(producer, serializer, ((None, u) for u in users), topic=topic,
                          dead_letter_topic=settings.dead_letter_topic, source="bench.size", report=report)
    publish_stage.finish(producer, report)


def publish_json(settings: Settings, topic: str, users: list[User], *, seed_style: bool) -> None:
    """Uncompressed JSON. Batched: through our publisher with a JSON value. Seed style: unkeyed, one record per batch."""
    if not seed_style:
        producer = publish_stage.make_producer(settings, **{"compression.type": "none"})
        report = publish_stage.DeliveryReport()
        publish_stage.publish(producer, lambda user, ctx: user_json(user), ((None, u) for u in users), topic=topic,
                              dead_letter_topic=settings.dead_letter_topic, source="bench.size", report=report)
        publish_stage.finish(producer, report)
        return
    producer = Producer({**settings.kafka_config(), "compression.type": "none", "batch.num.messages": 1})
    report = publish_stage.DeliveryReport()
    for user in users:
        while True:
            try:
                producer.produce(topic, value=user_json(user), on_delivery=report)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)
    publish_stage.finish(producer, report)


def measure(settings: Settings, subject: str, users: list[User], codecs: list[str], slow_linger_ms: int) -> dict[str, float]:
    """Bytes per user on the broker's disk for each variant; the variants' topics are deleted afterwards."""
    base = settings.users_topic
    variants = {f"avro-{codec}": f"{base}-{codec}" for codec in codecs}
    lingered = {f"avro-{codec} linger {slow_linger_ms} ms": (codec, f"{base}-{codec}-linger")
                for codec in codecs if slow_linger_ms and codec != "none"}
    variants.update({name: topic for name, (_, topic) in lingered.items()})
    variants.update({SEED: f"{base}-seed-json", "json batched": f"{base}-json"})
    admin = AdminClient(settings.kafka_config())
    ensure_topics(admin, {topic: settings.users_topic_partitions for topic in variants.values()}, settings.users_topic_replication)
    data_dir = Path(settings.stack_home) / "data" / "kafka"
    try:
        for name, topic in variants.items():
            if name in lingered:
                publish_avro(settings, subject, topic, users, lingered[name][0], slow_linger_ms)
            elif name.startswith("avro-"):
                publish_avro(settings, subject, topic, users, name.removeprefix("avro-"))
            else:
                publish_json(settings, topic, users, seed_style=name == SEED)
        return {name: round(segment_bytes(data_dir, topic) / len(users), 1) for name, topic in variants.items()}
    finally:
        for future in admin.delete_topics(list(variants.values()), operation_timeout=30).values():
            future.result()


def run_size(users: int, codecs: list[str], base: Settings, slow_linger_ms: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-size-") as scratch, \
            BenchCorner(base, "size", Path(scratch), keyspace=False) as corner:
        pool = fetch_pool(corner.settings, users, seed="bench-size")
        per_user = measure(corner.settings, corner.subject, pool, codecs, slow_linger_ms)
    if not per_user[SEED]:
        raise RuntimeError(f"no log segments found under {base.stack_home}/data/kafka: is Kafka the embedded stack's?")
    return {
        "benchmark": "size",
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "users": len(pool),
        "slow_linger_ms": slow_linger_ms,
        "bytes_per_user": per_user,
        "ratio_to_seed_json": {name: round(size / per_user[SEED], 3) for name, size in per_user.items()},
        "json_value_bytes_per_user": round(sum(len(user_json(u)) for u in pool) / len(pool), 1),
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"size bench: {result['users']:,} users, bytes per user in the broker's log segments "
             f"(a JSON value alone: {result['json_value_bytes_per_user']:.0f} bytes)",
             f"  {'variant':<26}{'bytes/user':>12}{'vs seed json':>14}"]
    ratios = result["ratio_to_seed_json"]
    for name, size in sorted(result["bytes_per_user"].items(), key=lambda item: item[1]):
        lines.append(f"  {name:<26}{size:>12,.1f}{ratios[name]:>14.3f}")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run, print the table, write the JSON; return the result."""
    parser = argparse.ArgumentParser(prog="python -m bench.size", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--codecs", type=lambda t: t.split(","), default=list(CODECS),
                        help="compression.type values, comma separated (default none,lz4,zstd,gzip,snappy)")
    parser.add_argument("--slow-linger-ms", type=int, default=200,
                        help="also publish each codec with this linger.ms (default 200; 0 skips)")
    args = parser.parse_args(argv)
    if args.users < 100 or not set(args.codecs) <= set(CODECS):
        parser.error(f"--users must be >= 100 and --codecs a subset of {','.join(CODECS)}")
    result = run_size(args.users, args.codecs, load_settings(), args.slow_linger_ms)
    write_result("size", result, render(result))
    return result


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
