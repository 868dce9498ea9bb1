"""Publish stage: validated users -> Kafka as Avro (Confluent wire format); rejects -> dead-letter topic.

- Values are Avro in the Confluent wire format against the schema *already
  registered* for the subject (the latest version, or the one pinned by
  USER_SCHEMA_VERSION): byte 0 is the magic 0, bytes 1-4 the schema id, then
  Avro binary. The schema is looked up once per run, as confluent-kafka's
  `AvroSerializer` looks it up, and each value is written with fastavro,
  byte-identical to the serializer's (producer.serialize says why and when
  the serializer itself is used). Schemas reach the registry only through
  `python -m producer.register`.
- Keys are the user id (login.uuid) as UTF-8, so a user always lands in the
  same partition and Cassandra upserts make replays harmless. The partitioner
  is librdkafka's `murmur2_random`: the Java client's (and Kafka Connect's,
  Spark's Kafka sink's) murmur2, so every client puts a key on the same
  partition (librdkafka's own default, CRC32, would not).
- The producer is idempotent (`enable.idempotence=True`: acks=all, no
  duplicates from internal retries). Every delivery report is counted;
  `finish()` flushes and raises `PublishError` if any delivery failed.
- A record the transform rejected is published to the dead-letter topic with
  its raw JSON, minus the login secrets, as the value and the headers of
  `core.dead_letter`. So is a User whose serialized value is over
  PRODUCER_MAX_MESSAGE_BYTES, or that the registered schema cannot encode:
  stage `transform`, the reason naming the size and limit or the schema; the
  run goes on (and fails at the end only if too many were dead-lettered).
  librdkafka's `message.max.bytes` is that limit plus room for the key and
  headers, so nothing the check lets through is refused by the client.

Use:
    serializer, registered = user_serializer(registry_client, "users-value", "latest")
    report = DeliveryReport()
    producer = make_producer(settings)
    publish(producer, serializer, results, topic="users", dead_letter_topic="users.dead_letter",
            source="http://...", report=report)
    finish(producer, report)   # raises PublishError if anything was not delivered
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import RegisteredSchema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from core import dead_letter
from core.topics import TopicError, ensure_topics  # noqa: F401  (re-exported: the stage's callers use it)
from core.settings import Settings
from producer.redact import without_secrets
from producer.registry import REGISTRY_TRANSPORT_ERRORS, RegistryUnavailable
from producer.serialize import writer_for
from producer.user import Rejected, TransformResult, User

ValueSerializer = Callable[[User, SerializationContext], bytes]  # producer.serialize's writer, or an AvroSerializer

# Room in librdkafka's message.max.bytes for a record's key, headers and framing beyond its value.
MESSAGE_OVERHEAD_BYTES = 16 * 1024
MAX_REASON_CHARS = 1000  # a dead-letter reason header stays small whatever an exception says


class PublishError(RuntimeError):
    """Records were not (all) delivered, or publishing cannot start; the message says what to do."""


class SchemaNotRegisteredError(PublishError):
    """The value subject has no registered schema (producers never auto-register)."""


class RegistryError(PublishError):
    """The registry answered an error other than 404; `http_status` says which (5xx, 408, 429 are transient)."""

    def __init__(self, message: str, http_status: int | None) -> None:
        super().__init__(message)
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        return self.http_status in (408, 429) or (self.http_status or 0) >= 500


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer from the settings; `overrides` are extra librdkafka keys (tests, tuning)."""
    conf: dict[str, Any] = {
        **settings.kafka_config(),
        "enable.idempotence": True,  # implies acks=all and safe internal retries
        # Batches of a few hundred users per partition: librdkafka's own CPU per user (compression included)
        # measured 7.4 us at 20 ms, 5.9 at 50, 5.4 at 100; 50 ms keeps what it adds to freshness small.
        "linger.ms": 50,
        # Chosen by measurement (python -m bench.size, 20,000 users, bytes per user in the broker's log
        # segments against the seed's one-JSON-message-per-user, 1,044 B): none 472 B (0.45), lz4 220 (0.21),
        # snappy 217 (0.21), gzip 157 (0.15), zstd 136 (0.13). CPU of librdkafka's threads per user in the
        # same produce loop: none 2.4 us, lz4 2.6, snappy 3.0, zstd 5.3, gzip 27.1 (the Python side is ~25):
        # of the two codecs under 0.2x JSON, zstd is the smaller and costs a fifth of gzip's CPU.
        "compression.type": "zstd",
        "partitioner": "murmur2_random",  # the Java client's key -> partition mapping
        "message.max.bytes": settings.producer_max_message_bytes + MESSAGE_OVERHEAD_BYTES,
        **overrides,
    }
    return Producer(conf)


def user_serializer(client: SchemaRegistryClient, subject: str,
                    version: str = "latest") -> tuple[ValueSerializer, RegisteredSchema]:
    """The value serializer for the schema registered under `subject` (never registering one).

    The lookup AvroSerializer would make, made once: `latest` is its
    `use.latest.version` (the client's `get_latest_version`), a number pins that
    version (its `use.schema.id`). So a missing schema is one clear error before
    anything is fetched, not a failure per record. Returns (serializer,
    RegisteredSchema); the serializer is called like AvroSerializer, `(user, ctx)`.
    """
    try:
        if version == "latest":
            registered = client.get_latest_version(subject)
        else:
            registered = client.get_version(subject, int(version))
    except REGISTRY_TRANSPORT_ERRORS as exc:
        raise RegistryUnavailable(client.config()["url"], exc) from exc
    except SchemaRegistryError as error:
        if error.http_status_code == 404:
            raise SchemaNotRegisteredError(
                f"no schema version {version!r} is registered under subject '{subject}' at "
                f"{client.config()['url']} ({error.error_message}). Producers never register schemas: "
                "run `make register` (python -m producer.register) first."
            ) from error
        raise RegistryError(f"Schema Registry error for subject '{subject}' at {client.config()['url']}: {error}",
                            error.http_status_code) from error
    return writer_for(client, subject, registered, pinned=version != "latest"), registered


@dataclass
class DeliveryReport:
    """Counts delivery reports per topic and keeps the first errors, for `finish()`."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        """The delivery callback: checks `err` first, as librdkafka asks."""
        if err is not None:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{msg.topic()}: {err}")
            return
        self.delivered[msg.topic()] = self.delivered.get(msg.topic(), 0) + 1


@dataclass
class PublishCounts:
    """What was handed to the producer (delivery is confirmed later by `finish()`)."""

    published: int = 0
    dead_lettered: int = 0


def _produce(producer: Producer, **kwargs: Any) -> None:
    """produce(), waiting for room when the local queue is full (BufferError) instead of dropping."""
    for _ in range(600):
        try:
            producer.produce(**kwargs)
            return
        except BufferError:
            producer.poll(0.1)  # serve delivery reports so the queue drains
    raise PublishError("the producer's local queue stayed full for 60 s; is Kafka reachable?")


def _dead_letter_key(raw: Any) -> bytes | None:
    """Key dead letters by login.uuid when there is one, so a record and its fix share a partition."""
    login = raw.get("login") if isinstance(raw, dict) else None
    uuid = login.get("uuid") if isinstance(login, dict) else None
    return uuid.encode("utf-8", "replace") if isinstance(uuid, str) else None


def _raw_bytes(raw: Any) -> bytes:
    """The record as the API sent it, minus its login secrets (JSON, UTF-8); lone surrogates, which UTF-8
    cannot carry, stay \\u-escaped."""
    raw = without_secrets(raw)
    try:
        return json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(raw).encode("ascii")


@dataclass(frozen=True)
class _Target:
    """Where and how records go: the two topics, the size limit, and what to name in dead-letter headers."""

    topic: str
    dead_letter_topic: str
    source: str
    max_message_bytes: int


def _dead_letter(producer: Producer, target: _Target, raw: Any, index: int, reason: str,
                 report: DeliveryReport) -> None:
    """Produce one dead letter (stage transform): the raw JSON without secrets, cut to the size limit if need be."""
    value = _raw_bytes(raw)
    if len(value) > target.max_message_bytes:
        reason = (f"{reason}; the raw record is {len(value)} bytes, only its first {target.max_message_bytes} "
                  f"are kept here (PRODUCER_MAX_MESSAGE_BYTES): fetch it again from dead_letter.source")
        value = value[: target.max_message_bytes]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    _produce(producer, topic=target.dead_letter_topic, key=_dead_letter_key(raw), value=value,
             headers=dead_letter.headers(dead_letter.TRANSFORM, reason, f"{target.source}#record={index}"),
             on_delivery=report)


def _serialize(serializer: ValueSerializer, user: User, ctx: SerializationContext, max_bytes: int) -> bytes | str:
    """The user's Confluent-framed Avro value, or the reason it cannot be sent (too big, or not encodable)."""
    try:
        value = serializer(user, ctx)
    except REGISTRY_TRANSPORT_ERRORS as exc:
        raise PublishError(f"lost the Schema Registry while serializing for topic {ctx.topic!r}: {exc}. "
                           "Check it is up (`python -m stack status`) and re-run with the same seed.") from exc
    except (SerializationError, ValueError, TypeError) as exc:
        # Bad data the transform let through, or a registered schema that disagrees with producer/transform.py:
        # dead-lettered with the reason, and a run where most records hit it fails its dead-letter check.
        return (f"serialize: user {user.id} cannot be encoded with the schema registered for topic {ctx.topic!r} "
                f"({type(exc).__name__}: {exc}); check USER_SCHEMA_VERSION and `make register`")
    if len(value) > max_bytes:
        return (f"serialize: the Avro value of user {user.id} is {len(value)} bytes, over the limit of "
                f"{max_bytes} bytes (PRODUCER_MAX_MESSAGE_BYTES)")
    return value


def publish(
    producer: Producer,
    value_serializer: ValueSerializer,
    results: Iterable[tuple[Any, TransformResult]],
    *,
    topic: str,
    dead_letter_topic: str,
    source: str,
    report: DeliveryReport,
    max_message_bytes: int = 1_000_000,
) -> PublishCounts:
    """Produce each (raw JSON, transform result): a User to `topic`, a Rejected to `dead_letter_topic`.

    `source` (the request URL) goes into the dead-letter headers with the
    record's index, so a dead letter can be fetched again exactly. A User whose
    value would be over `max_message_bytes` (PRODUCER_MAX_MESSAGE_BYTES), or that
    the schema cannot encode, is dead-lettered too.
    """
    value_ctx = SerializationContext(topic, MessageField.VALUE)
    target = _Target(topic, dead_letter_topic, source, max_message_bytes)
    counts = PublishCounts()
    produce = producer.produce
    for index, (raw, result) in enumerate(results):
        if isinstance(result, User):
            value = _serialize(value_serializer, result, value_ctx, max_message_bytes)
            if isinstance(value, bytes):
                key = result.id.encode("utf-8")  # what StringSerializer("utf_8") gives, without its call
                try:
                    produce(topic, value, key, on_delivery=report)
                except BufferError:  # the local queue is full: wait for room (see _produce)
                    _produce(producer, topic=topic, key=key, value=value, on_delivery=report)
                counts.published += 1
            else:
                _dead_letter(producer, target, raw, index, value, report)
                counts.dead_lettered += 1
        elif isinstance(result, Rejected):
            _dead_letter(producer, target, raw, index, result.reason, report)
            counts.dead_lettered += 1
        else:
            raise TypeError(f"expected User or Rejected, got {type(result).__name__}")
        producer.poll(0)  # serve delivery reports as they come (polling every 10 or 100 records measured no faster)
    return counts


def finish(producer: Producer, report: DeliveryReport, timeout: float = 60.0) -> None:
    """Flush, then raise `PublishError` if any message was not delivered (never a silent loss)."""
    deadline = time.monotonic() + timeout
    remaining = producer.flush(timeout)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(max(0.1, deadline - time.monotonic()))
    if remaining:
        raise PublishError(
            f"{remaining} messages still undelivered after {timeout:.0f} s; is Kafka reachable? "
            "Re-run with the same seed: the run is replayable and writes are idempotent downstream."
        )
    if report.failed:
        raise PublishError(
            f"{report.failed} messages failed delivery, e.g. {'; '.join(report.errors)}. "
            "Re-run with the same seed once Kafka is healthy."
        )
