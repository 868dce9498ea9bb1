"""The embedded stack's services, exercised through the same clients the pipeline uses.

Needs the running stack (`make test` starts it). Each test uses its own topic,
subject or table, so it can run beside other work on the same stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from cassandra.cluster import Cluster
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core import cassandra_schema
from stack.layout import Layout

pytestmark = pytest.mark.integration


def record_schema(name: str, *fields: dict) -> Schema:
    return Schema(json.dumps({"type": "record", "name": name, "namespace": "test.stack", "fields": list(fields)}), "AVRO")


def test_kafka_produce_and_consume(settings, unique_topic):
    producer = Producer({**settings.kafka_config(), "enable.idempotence": True})
    delivered = []
    for i in range(10):
        producer.produce(unique_topic, key=f"k{i}", value=f"v{i}", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0
    assert delivered == [None] * 10

    consumer = Consumer({**settings.kafka_config(), "group.id": f"g-{unique_topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([unique_topic])
    values = []
    try:
        for _ in range(60):
            message = consumer.poll(1)
            if message is None:
                if len(values) == 10:
                    break
                continue
            assert message.error() is None, message.error()
            values.append(message.value().decode())
    finally:
        consumer.close()
    assert values == [f"v{i}" for i in range(10)]


def test_registry_registers_fetches_and_rejects_an_incompatible_version(settings, unique_topic):
    client = SchemaRegistryClient(settings.schema_registry_config())
    subject = f"{unique_topic}-value"
    v1 = record_schema("Person", {"name": "name", "type": "string"})

    schema_id = client.register_schema(subject, v1)
    assert json.loads(client.get_schema(schema_id).schema_str) == json.loads(v1.schema_str)
    assert client.get_latest_version(subject).schema_id == schema_id

    # A new field without a default cannot read old data: BACKWARD must refuse it.
    incompatible = record_schema("Person", {"name": "name", "type": "string"}, {"name": "age", "type": "int"})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, incompatible)
    assert refused.value.http_status_code == 409
    assert client.get_versions(subject) == [1]

    # With a default it can: the registry accepts version 2.
    compatible = record_schema("Person", {"name": "name", "type": "string"}, {"name": "age", "type": "int", "default": 0})
    client.register_schema(subject, compatible)
    assert client.get_versions(subject) == [1, 2]


def test_cassandra_keyspace_table_insert_select(settings):
    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    cluster = Cluster(settings.cassandra_contact_points(), port=settings.cassandra_port)
    session = cluster.connect()
    try:
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        session.execute(f"CREATE TABLE {keyspace}.people (id uuid PRIMARY KEY, name text)")
        person = uuid.uuid4()
        session.execute(f"INSERT INTO {keyspace}.people (id, name) VALUES (%s, %s)", (person, "Зоя Ахмади"))
        row = session.execute(f"SELECT name FROM {keyspace}.people WHERE id = %s", (person,)).one()
        assert row.name == "Зоя Ахмади"
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()


def test_cassandra_keeps_no_snapshot_of_truncated_or_dropped_tables(settings):
    """stack/conf/cassandra.yaml sets auto_snapshot off: benches truncate and drop tables on every run."""
    data = Layout(settings.stack_home).data("cassandra") / "data"
    if not data.is_dir():
        pytest.skip(f"{data} is not here: Cassandra is not the embedded stack's")
    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    with cassandra_schema.connect(settings) as session:
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        try:
            session.execute(f"CREATE TABLE {keyspace}.people (id uuid PRIMARY KEY, name text)")
            session.execute(f"INSERT INTO {keyspace}.people (id, name) VALUES (%s, %s)", (uuid.uuid4(), "Zoë"))
            session.execute(f"TRUNCATE {keyspace}.people")
            session.execute(f"INSERT INTO {keyspace}.people (id, name) VALUES (%s, %s)", (uuid.uuid4(), "Zoë"))
        finally:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    assert (data / keyspace).is_dir(), "the keyspace's directory should stay until the node cleans it up"
    assert sorted(path.relative_to(data) for path in (data / keyspace).rglob("snapshots")) == []


def test_cassandra_exits_on_out_of_memory_instead_of_running_on(settings):
    """A Cassandra that goes on after an OutOfMemoryError can corrupt data: the running JVM has the flag that stops it."""
    pidfile = Layout(settings.stack_home).pidfile("cassandra")
    if not pidfile.is_file():
        pytest.skip(f"{pidfile} is not here: Cassandra is not the embedded stack's")
    pid = int(pidfile.read_text().split()[0])
    jcmd = Path(os.readlink(f"/proc/{pid}/exe")).with_name("jcmd")  # the JDK that runs it: the JVM itself answers
    flags = subprocess.run([str(jcmd), str(pid), "VM.flags"], capture_output=True, text=True, timeout=60, check=True)
    assert "-XX:+ExitOnOutOfMemoryError" in flags.stdout.split()


@pytest.mark.spark
def test_spark_session_reads_kafka_and_round_trips_cassandra(settings, unique_topic, spark):
    """The jars `make setup` fetched give Spark (built by spark.session) a Kafka source and the Cassandra connector."""
    from spark.sink import wait_for_connector

    producer = Producer(settings.kafka_config())
    for i in range(5):
        producer.produce(unique_topic, key=str(i), value=f"value-{i}")
    assert producer.flush(15) == 0

    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    cluster = Cluster(settings.cassandra_contact_points(), port=settings.cassandra_port)
    session = cluster.connect()
    session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
    session.execute(f"CREATE TABLE {keyspace}.kv (key text PRIMARY KEY, value text)")
    try:
        frame = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
            .option("subscribe", unique_topic)
            .option("startingOffsets", "earliest")
            .load()
            .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value")
        )
        assert sorted(row.value for row in frame.collect()) == [f"value-{i}" for i in range(5)]

        # The shared session's connector hears of a keyspace created a moment ago only through debounced events.
        wait_for_connector(spark, keyspace, "kv", {"key", "value"}, timeout=20)
        frame.write.format("org.apache.spark.sql.cassandra").options(keyspace=keyspace, table="kv").mode("append").save()
        back = spark.read.format("org.apache.spark.sql.cassandra").options(keyspace=keyspace, table="kv").load()
        assert {(row.key, row.value) for row in back.collect()} == {(str(i), f"value-{i}") for i in range(5)}
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
