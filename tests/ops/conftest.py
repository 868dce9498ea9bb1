"""Fixtures of the operator tools' tests: isolated settings, the live stack, a fresh topic, producing test messages."""

from __future__ import annotations

import os
import uuid

import pytest

from core import health
from core.settings import Settings


def settings_for(**overrides) -> Settings:
    """Settings from defaults plus overrides only: no .env, no environment leaking in."""
    names = {name.upper() for name in Settings.model_fields}
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.upper() in names}
    try:
        return Settings(_env_file=None, **overrides)
    finally:
        os.environ.update(saved)


def produce(settings: Settings, topic: str, messages: list[tuple[int, list[tuple[str, bytes]]]], values: list[bytes] | None = None) -> None:
    """Writes one message per (partition, headers); raises if any delivery fails."""
    from confluent_kafka import Producer

    failures = []
    producer = Producer(settings.kafka_config())
    for i, (partition, headers) in enumerate(messages):
        value = values[i] if values else f"m{i}".encode()
        producer.produce(topic, value=value, partition=partition, headers=headers,
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
    assert producer.flush(30) == 0
    assert failures == []


@pytest.fixture(scope="module")
def live_settings() -> Settings:
    """The default settings (the embedded stack), failing fast with how to start it."""
    settings = settings_for()
    for probe in (health.probe_kafka, health.probe_registry, health.probe_cassandra):
        answer = probe(settings, 5.0)
        if not answer.up:
            pytest.fail(f"{answer.name} at {answer.address} is down ({answer.detail}); start it with `make up`")
    return settings


@pytest.fixture
def fresh_topic(live_settings):
    """A unique 3-partition topic, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"status-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient(live_settings.kafka_config())
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)
