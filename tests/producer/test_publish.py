"""Publish failure paths with a real librdkafka client and no broker: nothing is lost silently."""

from __future__ import annotations


import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from core import dead_letter
from producer.publish import DeliveryReport, PublishError, TopicError, _dead_letter_key, _raw_bytes, ensure_topics, finish, publish
from producer.transform import Rejected
from tests.ports import closed_port


def test_undeliverable_messages_raise_after_flush():
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{closed_port()}", "message.timeout.ms": 1000,
                         "enable.idempotence": True, "log_level": 0})
    report = DeliveryReport()
    results = [({"login": {"uuid": "u1"}}, Rejected("email: missing")), ({}, Rejected("login: missing"))]
    counts = publish(producer, None, results, topic="users", dead_letter_topic="users.dead_letter",
                     source="http://x/api/?seed=s&page=1", report=report)
    assert counts.dead_lettered == 2
    with pytest.raises(PublishError, match=r"2 messages failed delivery, e\.g\. users\.dead_letter: .*same seed"):
        finish(producer, report, timeout=10)
    assert report.failed == 2 and report.delivered == {}


def test_kafka_down_when_creating_topics_says_what_to_do():
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{closed_port()}", "log_level": 0})
    with pytest.raises(TopicError, match=r"Is Kafka running\? Start the stack with `make up`"):
        ensure_topics(admin, {"users": 3}, replication=1, timeout=2)


def test_publish_refuses_unknown_results():
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{closed_port()}", "log_level": 0})
    with pytest.raises(TypeError, match="expected User or Rejected"):
        publish(producer, None, [({}, "oops")], topic="t", dead_letter_topic="d", source="s", report=DeliveryReport())


def test_dead_letter_value_and_key():
    assert _raw_bytes({"name": {"first": "Соломія"}}) == '{"name": {"first": "Соломія"}}'.encode()
    assert _raw_bytes({"x": "\ud800"}) == b'{"x": "\\ud800"}'  # still valid JSON, ASCII-escaped
    assert _dead_letter_key({"login": {"uuid": "abc"}}) == b"abc"
    assert _dead_letter_key({"login": None}) is None and _dead_letter_key([1]) is None


def test_dead_letter_headers_format():
    headers = dead_letter.headers(dead_letter.TRANSFORM, "email: missing", "http://x/api/?page=1#record=3")
    assert dead_letter.read_headers(headers) == {
        dead_letter.STAGE: "transform", dead_letter.REASON: "email: missing",
        dead_letter.SOURCE: "http://x/api/?page=1#record=3"}
