"""What an earlier run left, counted on the real Kafka and Cassandra in a corner of the shared stack.

Needs the core stack (`make up`): a private topic pair, keyspace and checkpoint per test, removed afterwards.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from core.cassandra_schema import connect
from core.settings import load_settings
from core.topics import ensure_topics
from ops.leftovers import describe, find_leftovers

pytestmark = pytest.mark.integration


@pytest.fixture
def corner(tmp_path):
    token = uuid.uuid4().hex[:10]
    settings = load_settings().model_copy(update={
        "users_topic": f"test-leftovers-{token}",
        "dead_letter_topic": f"test-leftovers-{token}.dead_letter",
        "cassandra_keyspace": f"test_leftovers_{token}",
        "spark_checkpoint_dir": str(tmp_path / "checkpoint"),
    })
    admin = AdminClient(settings.kafka_config())
    yield settings
    admin.delete_topics([settings.users_topic, settings.dead_letter_topic], operation_timeout=30)
    with connect(settings) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=60)


def produce(settings, topic: str, count: int) -> None:
    producer = Producer(settings.kafka_config())
    for n in range(count):
        producer.produce(topic, key=str(n).encode(), value=b"x", partition=0)
    assert producer.flush(30) == 0


def test_a_clean_corner_has_nothing(corner):
    found = find_leftovers(corner)
    assert found.empty
    assert found.topics == {corner.users_topic: 0, corner.dead_letter_topic: 0}  # missing topics hold nothing
    assert found.rows == 0 and found.checkpoint_batch is None  # no keyspace yet: no rows
    assert describe(found) == "    a clean stack: no records on the topics, no checkpoint, no rows yet"


def test_records_a_checkpoint_and_rows_are_counted_and_named(corner):
    ensure_topics(AdminClient(corner.kafka_config()), {corner.users_topic: 3, corner.dead_letter_topic: 1}, 1)
    produce(corner, corner.users_topic, 10)
    # Retention removed the first 3: the topic holds what is between its low and high watermarks.
    admin = AdminClient(corner.kafka_config())
    for future in admin.delete_records([TopicPartition(corner.users_topic, 0, 3)]).values():
        future.result(timeout=30)
    produce(corner, corner.dead_letter_topic, 2)
    offsets = Path(corner.spark_checkpoint_dir) / "offsets"  # Spark names each entry by its batch id
    offsets.mkdir(parents=True)
    for batch in ("0", "1", "12", ".12.crc"):
        (offsets / batch).write_text("v1\n")
    with connect(corner) as session:
        session.execute(f"CREATE KEYSPACE {corner.cassandra_keyspace} WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}", timeout=60)
        session.execute(f"CREATE TABLE {corner.cassandra_keyspace}.{corner.cassandra_table} (id uuid PRIMARY KEY)", timeout=60)
        for _ in range(4):
            session.execute(f"INSERT INTO {corner.cassandra_keyspace}.{corner.cassandra_table} (id) VALUES (%s)", (uuid.uuid4(),))

    found = find_leftovers(corner)
    assert found.topics == {corner.users_topic: 7, corner.dead_letter_topic: 2}
    assert found.checkpoint_batch == 12
    assert found.rows == 4
    assert describe(found) == (
        f"    this stack holds data from earlier runs: 7 records on {corner.users_topic}, 2 records on "
        f"{corner.dead_letter_topic}, a checkpoint at batch 12 ({corner.spark_checkpoint_dir}), "
        f"4 rows in {corner.cassandra_keyspace}.{corner.cassandra_table}.\n"
        "    This run counts only the users it ingests itself; `make clean` wipes everything for a clean start."
    )
