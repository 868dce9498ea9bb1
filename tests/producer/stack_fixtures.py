"""Fixtures and helpers for tests that use real services: a local data source, Kafka, the registry.

Imported by tests/producer/conftest.py and tests/dags/conftest.py. The data
source runs in-process on a free loopback port (real HTTP, with failure
injection); Kafka and the Schema Registry are the shared embedded stack at
KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL. Every test gets its own topics
and subjects (`test-<hex>`), deleted afterwards, so tests do not collide with
each other or with other engineers on the same stack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.settings import Settings, load_settings
from producer.registry import REGISTRY_TRANSPORT_ERRORS, make_client
from standin.randomuser import DataSource, make_server


@dataclass
class LocalDataSource:
    url: str  # http://127.0.0.1:<port>/api/
    source: DataSource  # the server's state (injected failure counter)

    def get(self, **params) -> dict:
        """What the server serves for these params (the expectation side of the tests)."""
        response = requests.get(self.url, params=params, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def datasource() -> Iterator[LocalDataSource]:
    """The randomuser.me stand-in, served from a thread on a free port for the whole session."""
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="datasource", daemon=True)
    thread.start()
    yield LocalDataSource(f"http://127.0.0.1:{server.server_address[1]}/api/", server.source)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def stack_services() -> Settings:
    """Fail (not skip) the integration tests at once when Kafka or the registry cannot be reached."""
    settings = load_settings()
    problems = []
    try:
        AdminClient({**settings.kafka_config(), "socket.connection.setup.timeout.ms": 3000}).list_topics(timeout=5)
    except KafkaException as exc:
        problems.append(f"Kafka at {settings.kafka_bootstrap_servers}: {exc.args[0]}")
    try:
        make_client(settings, max_retries=0).get_subjects()
    except REGISTRY_TRANSPORT_ERRORS + (SchemaRegistryError,) as exc:
        problems.append(f"Schema Registry at {settings.schema_registry_url}: {exc}")
    if problems:
        pytest.fail(
            "integration tests need the embedded stack, but: " + "; ".join(problems)
            + ". Start it with `make up` (python -m stack up), or point KAFKA_BOOTSTRAP_SERVERS and "
            "SCHEMA_REGISTRY_URL at running services.",
            pytrace=False,
        )
    return settings


@pytest.fixture
def stack_settings(stack_services: Settings, datasource: LocalDataSource, unique_topic: str) -> Iterator[Settings]:
    """Settings for one test: its own users and dead-letter topics and subject, the local data source,
    fast retries. Topics and subjects it leaves behind are deleted afterwards."""
    settings = stack_services.model_copy(update={
        "users_topic": unique_topic,
        "dead_letter_topic": f"{unique_topic}.dead_letter",
        "datasource_url": datasource.url,
        "datasource_retries": 3,
        "datasource_backoff_factor": 0.01,
        "datasource_timeout_seconds": 5.0,
    })
    yield settings
    cleanup(settings, unique_topic)


def cleanup(settings: Settings, prefix: str) -> None:
    """Delete the test's topics and subjects (anything named after its unique prefix)."""
    admin = AdminClient(settings.kafka_config())
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result()
    client = make_client(settings)
    for subject in client.get_subjects():
        if subject.startswith(prefix):
            client.delete_subject(subject)
            client.delete_subject(subject, permanent=True)


def consume(settings: Settings, topic: str, expected: int, timeout: float = 30.0) -> list[Message]:
    """Read a topic from the beginning until `expected` messages arrived (then a short grace for extras)."""
    consumer = Consumer({
        **settings.kafka_config(),
        "group.id": f"{topic}-reader",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise AssertionError(f"topic {topic}: {metadata.error}")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        grace_until = None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if grace_until is not None and time.monotonic() > grace_until:
                    break
                continue
            if msg.error():
                raise AssertionError(f"consumer error on {topic}: {msg.error()}")
            messages.append(msg)
            if len(messages) >= expected and grace_until is None:
                grace_until = time.monotonic() + 1.0  # catch any unexpected extra messages
        return messages
    finally:
        consumer.close()
