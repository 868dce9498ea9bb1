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


USER_V1 = {"type": "record", "name": "User", "namespace": "test.monitor", "fields": [
    {"name": "id", "type": "string"}, {"name": "email", "type": "string"}]}
USER_V2 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "nickname", "type": ["null", "string"], "default": None}]}
TRANSFORM_PAYLOAD = {"login": {"uuid": "u-1", "password": "hunter2", "sha256": "abc"}, "email": "a@b.c"}
TRANSFORM_REASON = "location.postcode: missing"
DECODE_REASON = "trailing bytes after the Avro record"


@pytest.fixture
def corner(live_settings, tmp_path):
    """A private corner of the shared stack for the monitor: its own topics, group, subject (v1, v2), job files.

    Users topic: 3 partitions with 5, 2 and 4 records, the group committed at 3, 2 and nothing.
    Dead letters: one from the producer (JSON with credentials), one Avro record from Spark, one that is not Avro.
    """
    import json as _json

    import requests
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from core import dead_letter, job_state
    from core.schema_registry import make_client
    from spark.progress import progress_path, write_progress

    tag = uuid.uuid4().hex[:10]
    settings = live_settings.model_copy(update={
        "users_topic": f"monitor-{tag}", "dead_letter_topic": f"monitor-{tag}.dead_letter",
        "spark_consumer_group": f"monitor-{tag}", "stack_home": tmp_path / "stack",
        "spark_checkpoint_dir": str(tmp_path / "checkpoints" / "users"), "monitor_sample_seconds": 1.0})
    admin = AdminClient(settings.kafka_config())
    topics = [settings.users_topic, settings.dead_letter_topic]
    for future in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topics]).values():
        future.result(timeout=30)
    subject = f"{settings.users_topic}-value"
    base = settings.schema_registry_url.rstrip("/")
    ids = [requests.post(f"{base}/subjects/{subject}/versions", json={"schema": _json.dumps(s)}, timeout=10).json()["id"]
           for s in (USER_V1, USER_V2)]
    try:
        produce(settings, settings.users_topic, [(0, [])] * 5 + [(1, [])] * 2 + [(2, [])] * 4)
        commit = ConsumerGroupTopicPartitions(settings.spark_consumer_group,
                                              [TopicPartition(settings.users_topic, 0, 3), TopicPartition(settings.users_topic, 1, 2)])
        admin.alter_consumer_group_offsets([commit])[settings.spark_consumer_group].result(timeout=30)
        avro_bytes = AvroSerializer(make_client(settings), _json.dumps(USER_V1), conf={"auto.register.schemas": False, "use.latest.version": False})(
            {"id": "u-2", "email": "x@y.z"}, SerializationContext(settings.users_topic, MessageField.VALUE))
        letters = [
            (0, dead_letter.headers(dead_letter.TRANSFORM, TRANSFORM_REASON, "http://localhost:8765/api/?seed=s&page=1")),
            (1, dead_letter.headers(dead_letter.DECODE, DECODE_REASON, f"{settings.users_topic}/1/7")),
            (2, dead_letter.headers(dead_letter.DECODE, "not in the Confluent wire format", f"{settings.users_topic}/2/0")),
        ]
        produce(settings, settings.dead_letter_topic, letters,
                values=[_json.dumps(TRANSFORM_PAYLOAD).encode(), avro_bytes, b"\x07garbage"])
        write_progress(progress_path(settings.spark_checkpoint_dir), {
            "batch_id": 3, "updated_at": "2026-01-01T00:00:00.000Z", "batch": {"records_in": 4, "duration_seconds": 1.5},
            "totals": {"records_in": 6, "rows_written": 5, "dead_lettered": 1, "batches": 4}})
        job_state.write_job_state(job_state.job_state_path(settings.spark_checkpoint_dir), job_state.WAITING,
                                  service="cassandra", detail="NoHostAvailable")
        yield {"settings": settings, "subject": subject, "ids": ids, "avro_bytes": avro_bytes}
    finally:
        for future in admin.delete_topics(topics).values():
            future.result(timeout=30)
        admin.delete_consumer_groups([settings.spark_consumer_group])[settings.spark_consumer_group].exception(timeout=30)
        requests.delete(f"{base}/subjects/{subject}", timeout=10)
        requests.delete(f"{base}/subjects/{subject}", params={"permanent": "true"}, timeout=10)
