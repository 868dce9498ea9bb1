"""Dead letters for the monitor: the newest ones to browse, decoded, and a running tally by stage and reason.

A dead letter's value is the original bytes (core.dead_letter). The page shows
them the way they were meant to be read: the producer's `transform` stage
keeps the API's JSON; Spark's stages keep a Kafka record, which is Avro in the
Confluent wire format when its header is intact, so it is decoded with
confluent-kafka's AvroDeserializer against the writer schema its id names.
Anything that does not decode is shown as hex with the reason it did not.
Fields that carry credentials in the API's JSON (login.password, salt, hashes)
are masked before they leave the monitor.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from core import dead_letter
from core.health import REGISTRY_ERRORS, KafkaErrors, kafka_conf, registry_client
from core.settings import Settings
from ops.status.kafka import DeadLetterCounts, count_dead_letter, read_to_watermarks

HEX_LIMIT = 4096  # bytes of a payload shown as hex; a poison record can be large
SECRET_KEYS = {"password", "salt", "md5", "sha1", "sha256"}  # randomuser's login.* credentials
MASK = "***"


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    stage: str | None
    reason: str | None
    source: str | None  # where the bytes came from: "topic/partition/offset" or the data source request
    schema_id: int | None
    key: str | None
    payload_format: str  # "avro", "json" or "hex"
    payload: Any  # the decoded record, or the hex string
    decode_error: str | None = None
    size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _consumer(settings: Settings, errors: KafkaErrors) -> Consumer:
    """A throwaway consumer: manual assignment, no commits, so no group is left behind."""
    return Consumer(kafka_conf(settings, errors, **{
        "group.id": f"userstream-monitor-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))


def mask_secrets(value: Any) -> Any:
    """The same JSON with every credential field's value replaced by a mask."""
    if isinstance(value, dict):
        return {k: (MASK if k in SECRET_KEYS and v is not None else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def schema_id_of(value: bytes | None) -> int | None:
    """The writer schema id of a Confluent-framed record (magic byte 0, then a big-endian int32)."""
    if value is None or len(value) < 5 or value[0] != 0:
        return None
    return int.from_bytes(value[1:5], "big")


def decode_payload(value: bytes | None, stage: str | None, topic: str, deserializer: AvroDeserializer) -> tuple[str, Any, str | None]:
    """(format, payload, why it did not decode): JSON for the producer's stage, Avro by schema id, else hex."""
    if value is None:
        return "hex", "", "no value (a null record)"
    if stage == dead_letter.TRANSFORM:
        try:
            return "json", mask_secrets(json.loads(value)), None
        except (ValueError, UnicodeDecodeError) as exc:
            return "hex", value[:HEX_LIMIT].hex(), f"not JSON: {exc}"
    if schema_id_of(value) is None:
        return "hex", value[:HEX_LIMIT].hex(), "not in the Confluent wire format (no magic byte 0 and schema id)"
    try:
        record = deserializer(value, SerializationContext(topic, MessageField.VALUE))
        return "avro", mask_secrets(json.loads(json.dumps(record, default=str))), None
    except (SerializationError, *REGISTRY_ERRORS, ValueError, TypeError, EOFError, IndexError, KeyError) as exc:
        # Poison is what this page is for: a record that does not decode is shown as hex with the reason.
        return "hex", value[:HEX_LIMIT].hex(), f"{type(exc).__name__}: {str(exc)[:300]}"


def _start_offsets(consumer: Consumer, topic: str, limit: int, timeout: float) -> tuple[list[TopicPartition], dict[int, int]]:
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return [], {}
    assignment, ends = [], {}
    for partition in sorted(metadata.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if high > low:
            assignment.append(TopicPartition(topic, partition, max(low, high - limit)))
            ends[partition] = high
    return assignment, ends


def newest(settings: Settings, limit: int = 50, stage: str | None = None, timeout: float = 5.0) -> list[DeadLetter]:
    """The newest `limit` dead letters (of one stage, if given), newest first, decoded.

    Reads at most `limit` records back from the end of each partition, so the
    cost does not grow with the topic.
    """
    topic = settings.dead_letter_topic
    errors = KafkaErrors()
    consumer = _consumer(settings, errors)
    deserializer = AvroDeserializer(registry_client(settings, timeout))
    letters: list[DeadLetter] = []
    try:
        assignment, remaining = _start_offsets(consumer, topic, limit, timeout)
        if assignment:
            consumer.assign(assignment)
        for message in read_to_watermarks(consumer, remaining, time.monotonic() + max(timeout, 10.0)):
            letters.append(_letter(message, deserializer))
    except KafkaException as exc:
        consumer.poll(0)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, errors.cause(exc))) from exc
    finally:
        consumer.close()
    if stage:
        letters = [letter for letter in letters if letter.stage == stage]
    letters.sort(key=lambda d: (d.timestamp_ms or 0, d.offset), reverse=True)
    return letters[:limit]


def _letter(message: Any, deserializer: AvroDeserializer) -> DeadLetter:
    headers = dead_letter.read_headers(message.headers())
    value = message.value()
    stage = headers.get(dead_letter.STAGE)
    fmt, payload, error = decode_payload(value, stage, message.topic(), deserializer)
    header_id = headers.get(dead_letter.SCHEMA_ID)
    kind, ts = message.timestamp()
    return DeadLetter(
        topic=message.topic(), partition=message.partition(), offset=message.offset(),
        timestamp_ms=ts if kind else None, stage=stage, reason=headers.get(dead_letter.REASON),
        source=headers.get(dead_letter.SOURCE),
        schema_id=int(header_id) if header_id and header_id.isdigit() else schema_id_of(value),
        key=message.key().decode(errors="replace") if message.key() else None,
        payload_format=fmt, payload=payload, decode_error=error, size=len(value or b""),
    )


@dataclass
class DeadLetterTally:
    """Counts by stage and reason, kept up to date by reading only what arrived since the last call."""

    settings: Settings
    counts: DeadLetterCounts = field(init=False)
    positions: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = DeadLetterCounts(self.settings.dead_letter_topic, exists=False)

    def update(self, timeout: float = 5.0, budget_seconds: float = 10.0) -> DeadLetterCounts:
        """Read the new dead letters (bounded by `budget_seconds`; the rest is read next time)."""
        topic = self.settings.dead_letter_topic
        errors = KafkaErrors()
        consumer = _consumer(self.settings, errors)
        try:
            self._read_new(consumer, topic, timeout, budget_seconds)
            self.counts.error = None
        except KafkaException as exc:
            consumer.poll(0)
            self.counts.error = f"kafka down: {errors.cause(exc)}"
        finally:
            consumer.close()
        return self.counts

    def _read_new(self, consumer: Consumer, topic: str, timeout: float, budget_seconds: float) -> None:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        self.counts.exists = True
        remaining, assignment = {}, []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            start = max(low, self.positions.get(partition, low))
            if high > start:
                remaining[partition] = high
                assignment.append(TopicPartition(topic, partition, start))
        self.counts.expected = self.counts.scanned + sum(remaining[tp.partition] - tp.offset for tp in assignment)
        if not assignment:
            return
        consumer.assign(assignment)
        for message in read_to_watermarks(consumer, remaining, time.monotonic() + budget_seconds):
            count_dead_letter(self.counts, dead_letter.read_headers(message.headers()))
            self.positions[message.partition()] = message.offset() + 1
        self.counts.complete = not remaining
