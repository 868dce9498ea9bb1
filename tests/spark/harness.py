"""One isolated corner of the shared stack per test: its own topics, subject, keyspace and checkpoint.

The embedded stack is shared with other engineers' tests, so nothing here
touches the configured `users` topic or `userstream` keyspace: every name is
suffixed with a random token and removed afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from cassandra.cluster import NoHostAvailable

from core import cassandra_schema
from core.settings import Settings, load_settings

PARTITIONS = 3
# confluent-kafka's SchemaRegistryClient waits forever by default: a registry that accepts
# connections while still starting up would hang the test instead of failing it.
REGISTRY_TIMEOUT = 30


def require_stack(settings: Settings) -> None:
    """Fail (not skip) with the fix when a service is down: a skipped integration test proves nothing."""
    services = {
        "Kafka": settings.kafka_bootstrap_servers.split(",")[0],
        "Schema Registry": settings.schema_registry_url.split("//", 1)[1].split("/", 1)[0],
        "Cassandra": f"{settings.cassandra_contact_points()[0]}:{settings.cassandra_port}",
    }
    down = []
    for name, address in services.items():
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as exc:
            down.append(f"{name} at {address} ({exc.strerror or exc})")
    if down:
        raise RuntimeError(f"stack not reachable: {', '.join(down)}; start it with `make up` (or run `make test`)")


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll until condition() is truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Corner:
    """A test's private topic, dead-letter topic, subject, keyspace/table and checkpoint, with helpers."""

    settings: Settings
    registry: SchemaRegistryClient
    producer: Producer
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    _cassandra: Any = None  # one cassandra-driver Cluster for every query of the test, not one per poll

    @classmethod
    def create(cls, tmp_path: Path, name: str, base: Settings | None = None) -> Corner:
        """A corner of the shared stack, or of the stack `base` points at (tests/faults' private one)."""
        token = uuid.uuid4().hex[:8]
        base = base or load_settings()
        require_stack(base)
        settings = base.model_copy(update={
            "users_topic": f"t_{name}_{token}",
            "dead_letter_topic": f"t_{name}_{token}.dead_letter",
            "cassandra_keyspace": f"t_{name}_{token}",
            "cassandra_table": "users",
            "cassandra_replication": "SimpleStrategy:1",
            "spark_checkpoint_dir": str(tmp_path / "checkpoints" / name),
            "user_schema_version": "latest",
            "subject_name_strategy": "topic",
            "spark_consumer_group": f"t_{name}_{token}",
            # An unknown id waits this long before it is dead-lettered: short, so poison tests stay quick.
            "registry_not_found_grace_seconds": 1.0,
        })
        corner = cls(settings, SchemaRegistryClient({**settings.schema_registry_config(), "timeout": REGISTRY_TIMEOUT}), Producer(settings.kafka_config()))
        corner.create_topics()
        corner.create_table()
        corner.cleanups.append(corner._delete_group)
        return corner

    @property
    def subject(self) -> str:
        return f"{self.settings.users_topic}-value"

    def env(self) -> dict[str, str]:
        """The settings as environment variables, for `python -m spark.stream_job` subprocesses."""
        s = self.settings
        return {
            "USERS_TOPIC": s.users_topic,
            "DEAD_LETTER_TOPIC": s.dead_letter_topic,
            "CASSANDRA_KEYSPACE": s.cassandra_keyspace,
            "CASSANDRA_TABLE": s.cassandra_table,
            "SPARK_CHECKPOINT_DIR": s.spark_checkpoint_dir,
            "USER_SCHEMA_VERSION": s.user_schema_version,
            "SPARK_SHUFFLE_PARTITIONS": "2",
            "SPARK_CONSUMER_GROUP": s.spark_consumer_group,
            "REGISTRY_NOT_FOUND_GRACE_SECONDS": str(s.registry_not_found_grace_seconds),
        }

    # --- Kafka -----------------------------------------------------------------------------

    def create_topics(self) -> None:
        admin = AdminClient(self.settings.kafka_config())
        topics = [self.settings.users_topic, self.settings.dead_letter_topic]
        futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        for future in futures.values():
            future.result(timeout=30)
        self.cleanups.append(lambda: [f.result(timeout=30) for f in admin.delete_topics(topics).values()])

    def produce_raw(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """Publish (key, value) pairs; raise if any delivery failed."""
        errors: list[str] = []

        def delivered(err, msg):
            if err is not None:
                errors.append(str(err))

        count = 0
        for key, value in records:
            self.producer.produce(self.settings.users_topic, key=key, value=value, on_delivery=delivered)
            self.producer.poll(0)
            count += 1
        remaining = self.producer.flush(30)
        if errors or remaining:
            raise KafkaException(f"{len(errors)} deliveries failed ({errors[:3]}), {remaining} not flushed")
        return count

    def serializer(self, schema: dict) -> AvroSerializer:
        """confluent-kafka's own serializer, looking the schema up (never registering it)."""
        return AvroSerializer(self.registry, json.dumps(schema), conf={"auto.register.schemas": False})

    def encode(self, serializer: AvroSerializer, user: dict) -> bytes:
        return serializer(user, SerializationContext(self.settings.users_topic, MessageField.VALUE))

    def produce_users(self, serializer: AvroSerializer, users: list[dict]) -> None:
        self.produce_raw((u["id"].encode(), self.encode(serializer, u)) for u in users)

    def dead_letters(self, expected: int, timeout: float = 60) -> list[Any]:
        """Every message on the dead-letter topic, waiting up to `timeout` for at least `expected` of them.

        Partitions are assigned, not subscribed: no consumer group, so no group
        coordinator to wait for (or to leave) on a freshly started broker.
        """
        topic = self.settings.dead_letter_topic
        consumer = Consumer({**self.settings.kafka_config(), "group.id": "unused", "enable.auto.commit": False})
        try:
            deadline = time.monotonic() + timeout
            while True:
                messages = self._read_all(consumer, topic)
                if len(messages) >= expected or time.monotonic() > deadline:
                    return messages
                time.sleep(0.5)
        finally:
            consumer.close()

    @staticmethod
    def _read_all(consumer: Consumer, topic: str) -> list[Any]:
        """Read each partition from the start to its current high watermark."""
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Any] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 30
        while remaining:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} up to its high watermarks {ends}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            messages.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                remaining.discard(msg.partition())
        consumer.unassign()
        return messages

    def group_offsets(self) -> dict[int, int]:
        """The job's consumer group's committed offsets on the users topic, by partition (none: {})."""
        admin = AdminClient(self.settings.kafka_config())
        request = [ConsumerGroupTopicPartitions(self.settings.spark_consumer_group)]
        result = admin.list_consumer_group_offsets(request)[self.settings.spark_consumer_group].result(timeout=30)
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == self.settings.users_topic and tp.offset >= 0}

    def _delete_group(self) -> None:
        """Remove the corner's consumer group, if the job ever committed to it."""
        admin = AdminClient(self.settings.kafka_config())
        for future in admin.delete_consumer_groups([self.settings.spark_consumer_group], request_timeout=30).values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() not in (KafkaError.GROUP_ID_NOT_FOUND,):
                    raise

    # --- Registry --------------------------------------------------------------------------

    def register(self, schema: dict) -> int:
        schema_id = self.registry.register_schema(self.subject, Schema(json.dumps(schema), "AVRO"))
        if self._delete_subject not in self.cleanups:  # bound methods compare equal, not identical
            self.cleanups.append(self._delete_subject)
        return schema_id

    def _delete_subject(self) -> None:
        self.delete_subject(self.subject)

    def delete_subject(self, subject: str) -> None:
        """Soft, then hard delete, as Confluent's API requires (Apicurio already forgets it at the soft delete)."""
        self.registry.delete_subject(subject)
        try:
            self.registry.delete_subject(subject, permanent=True)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise

    # --- Cassandra -------------------------------------------------------------------------

    def create_table(self) -> None:
        with cassandra_schema.connect(self.settings) as session:
            cassandra_schema.apply(self.settings, session)
        self.cleanups.append(self._drop_keyspace)

    def _drop_keyspace(self) -> None:
        with cassandra_schema.connect(self.settings) as session:
            session.execute(f"DROP KEYSPACE IF EXISTS {self.settings.cassandra_keyspace}")

    def cql(self, statement: str, reconnect_seconds: float = 60.0) -> list[dict[str, Any]]:
        """Run one statement on the test's session; after Cassandra was stopped and started again, reconnect.

        The driver's own reconnection backs off to half a minute and answers
        NoHostAvailable meanwhile (seen after the fault suite's 30 s outage,
        with the job long caught up), so a new session is opened instead, for
        up to `reconnect_seconds`.
        """
        deadline = time.monotonic() + reconnect_seconds
        while True:
            try:
                if self._cassandra is None:
                    cluster = cassandra_schema.cassandra_cluster(self.settings)
                    self._cassandra = (cluster, None)
                    self._cassandra = (cluster, cluster.connect())
                return [row._asdict() for row in self._cassandra[1].execute(statement)]
            except NoHostAvailable:
                self._cassandra[0].shutdown()
                self._cassandra = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every row of the test table, keyed by id as text."""
        table = f"{self.settings.cassandra_keyspace}.{self.settings.cassandra_table}"
        return {str(row["id"]): row for row in self.cql(f"SELECT * FROM {table}")}

    def count(self) -> int:
        table = f"{self.settings.cassandra_keyspace}.{self.settings.cassandra_table}"
        return self.cql(f"SELECT count(*) AS n FROM {table}")[0]["n"]

    def close(self) -> None:
        """Undo everything, newest first; every cleanup runs, the first failure is raised after."""
        failures = []
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # collected and re-raised below: cleanup must not stop at the first error
                failures.append(exc)
        if self._cassandra is not None:
            self._cassandra[0].shutdown()
            self._cassandra = None
        if failures:
            raise failures[0]


def as_stored(user: dict) -> dict[str, Any]:
    """What Cassandra should hold for a user: uuid as text, timestamps as naive UTC with millisecond precision."""
    stored = {}
    for key, value in user.items():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None, microsecond=value.microsecond // 1000 * 1000)
        stored[key] = value
    return stored


_EPOCH = dt.datetime(1970, 1, 1)


def exact_millis(value: Any) -> Any:
    """A timestamp as Cassandra stores it (whole milliseconds).

    cassandra-driver turns the stored milliseconds into a datetime through a
    float (`ms / 1000.0`), which is off by microseconds for far dates
    (9999-12-31T23:59:59.999 reads back as ...59.998993); rounding to the
    millisecond gives back exactly what is stored.
    """
    if not isinstance(value, dt.datetime):
        return value
    return _EPOCH + dt.timedelta(milliseconds=round((value - _EPOCH) / dt.timedelta(milliseconds=1)))


def assert_rows_match(rows: dict[str, dict[str, Any]], users: list[dict]) -> None:
    """Exactly these users, every field equal."""
    assert sorted(rows) == sorted(u["id"] for u in users), "row ids differ from the produced ids"
    for user in users:
        row = {k: (str(v) if k == "id" else exact_millis(v)) for k, v in rows[user["id"]].items()}
        expected = as_stored(user)
        different = {k: (expected[k], row.get(k)) for k in expected if row.get(k) != expected[k]}
        assert not different, f"user {user['id']}: (expected, stored) differ: {different}"
