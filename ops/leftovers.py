"""What an earlier run left on the stack: records on the topics, a checkpoint, rows in Cassandra.

The demo says so before it starts, with the numbers and how to start clean,
because leftovers change what a person sees (the job first replays or skips
what the checkpoint says, the table holds more rows than this run wrote) while
they must not change what the demo checks: it counts only the users this run
ingested (`ingested_at` at or after its trigger).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from core.settings import Settings

TIMEOUT = 10.0  # per question; a slow answer here only makes the notice say "unknown"


@dataclass(frozen=True)
class Leftovers:
    """Counts of what is already there; None where the stack did not answer in time."""

    topics: dict[str, int | None]  # topic -> records it holds
    checkpoint_batch: int | None  # the last batch the checkpoint recorded, None when there is none
    checkpoint: Path
    rows: int | None
    table: str

    @property
    def empty(self) -> bool:
        return not any(self.topics.values()) and self.checkpoint_batch is None and not self.rows


def find_leftovers(settings: Settings) -> Leftovers:
    checkpoint = Path(settings.spark_checkpoint_dir.removeprefix("file://"))
    return Leftovers(
        topics=topic_records(settings, [settings.users_topic, settings.dead_letter_topic]),
        checkpoint_batch=last_batch(checkpoint),
        checkpoint=checkpoint,
        rows=table_rows(settings),
        table=f"{settings.cassandra_keyspace}.{settings.cassandra_table}",
    )


def topic_records(settings: Settings, topics: list[str]) -> dict[str, int | None]:
    """Records each topic holds now (high minus low watermark over its partitions); 0 for a missing topic."""
    consumer = Consumer({**settings.kafka_config(), "group.id": "userstream-demo-leftovers", "enable.auto.commit": False})
    try:
        counts: dict[str, int | None] = {}
        for topic in topics:
            try:
                metadata = consumer.list_topics(topic, timeout=TIMEOUT).topics.get(topic)
                partitions = list(metadata.partitions) if metadata is not None and metadata.error is None else []
                counts[topic] = sum(high - low for low, high in (
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT) for p in partitions))
            except KafkaException:
                counts[topic] = None
        return counts
    finally:
        consumer.close()


def last_batch(checkpoint: Path) -> int | None:
    """The newest batch id in the checkpoint's offset log (Spark names each entry by its batch id)."""
    ids = [int(entry.name) for entry in (checkpoint / "offsets").glob("*") if entry.name.isdigit()]
    return max(ids) if ids else None


def table_rows(settings: Settings) -> int | None:
    """Rows in the users table; 0 when it does not exist yet, None when Cassandra does not answer in time."""
    from cassandra import InvalidRequest

    from core.cassandra_schema import CassandraUnavailable, connect
    from core.health import cassandra_errors

    try:
        with connect(settings) as session:
            query = f"SELECT count(*) FROM {settings.cassandra_keyspace}.{settings.cassandra_table}"
            return session.execute(query, timeout=30).one()[0]
    except InvalidRequest:  # no keyspace or table yet: nothing left over
        return 0
    except (CassandraUnavailable, *cassandra_errors()):
        return None


def describe(found: Leftovers) -> str:
    """The notice the demo prints: what is there, that this run counts only its own users, how to start clean."""
    if found.empty:
        return "    a clean stack: no records on the topics, no checkpoint, no rows yet"
    parts = [f"{count_text(count)} records on {topic}" for topic, count in found.topics.items()]
    parts.append(f"a checkpoint at batch {found.checkpoint_batch} ({found.checkpoint})" if found.checkpoint_batch is not None
                 else "no checkpoint")
    parts.append(f"{count_text(found.rows)} rows in {found.table}")
    return (f"    this stack holds data from earlier runs: {', '.join(parts)}.\n"
            "    This run counts only the users it ingests itself; `make clean` wipes everything for a clean start.")


def count_text(count: int | None) -> str:
    return "an unknown number of" if count is None else f"{count:,}"
