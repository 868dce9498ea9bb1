"""What Kafka says: end offsets per partition, the streaming job's consumer-group lag, dead letters by stage and reason.

Lag is read the way Control Center and `kafka-consumer-groups` read it: the
offsets the job committed to its consumer group (SPARK_CONSUMER_GROUP, one
commit per batch after the batch is written) against each partition's high
watermark. Spark's checkpoint stays the job's own source of truth for where it
resumes; the group is what every Kafka tool can see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from core import dead_letter
from core.health import KafkaErrors, kafka_conf, reason
from core.settings import Settings


@dataclass
class TopicOffsets:
    """Earliest and end (next to be written) offset per partition."""

    topic: str
    earliest: dict[int, int] = field(default_factory=dict)
    latest: dict[int, int] = field(default_factory=dict)
    exists: bool = True
    error: str | None = None

    @property
    def messages(self) -> int:
        return sum(self.latest[p] - self.earliest.get(p, 0) for p in self.latest)


@dataclass
class PartitionLag:
    topic: str
    partition: int
    end_offset: int
    committed: int | None  # None: the group has committed nothing for this partition yet
    lag: int  # negative when the commit is ahead of the topic (topic re-created?)


@dataclass
class GroupLag:
    """The consumer group's committed offsets against the topic's end offsets."""

    group: str
    topic: str
    partitions: list[PartitionLag] = field(default_factory=list)
    error: str | None = None

    @property
    def total(self) -> int | None:
        return sum(p.lag for p in self.partitions) if self.partitions else None


@dataclass
class DeadLetterCounts:
    topic: str
    by_stage: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)  # stage -> reason -> count
    scanned: int = 0
    expected: int = 0
    complete: bool = True
    exists: bool = True
    error: str | None = None


def _admin(settings: Settings) -> tuple[AdminClient, KafkaErrors]:
    errors = KafkaErrors()
    return AdminClient(kafka_conf(settings, errors)), errors


def topic_offsets(settings: Settings, topics: list[str], timeout: float) -> list[TopicOffsets]:
    """Earliest and end offsets of every partition of `topics`, from one AdminClient.

    A topic that does not exist yet is reported as such, not as an error: the
    dead-letter topic, for one, appears only with the first dead letter.
    """
    admin, errors = _admin(settings)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)
        return [TopicOffsets(t, error=f"kafka down: {errors.cause(exc)}") for t in topics]
    results = []
    for topic in topics:
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None:
            results.append(TopicOffsets(topic, exists=False))
            continue
        partitions = sorted(topic_meta.partitions)
        try:
            results.append(TopicOffsets(topic,
                                        earliest=_list_offsets(admin, topic, partitions, OffsetSpec.earliest(), timeout),
                                        latest=_list_offsets(admin, topic, partitions, OffsetSpec.latest(), timeout)))
        except KafkaException as exc:
            results.append(TopicOffsets(topic, error=reason(exc)))
    return results


def _list_offsets(admin: AdminClient, topic: str, partitions: list[int], spec: OffsetSpec, timeout: float) -> dict[int, int]:
    futures = admin.list_offsets({TopicPartition(topic, p): spec for p in partitions}, request_timeout=timeout)
    return {tp.partition: future.result().offset for tp, future in futures.items()}


def committed_offsets(settings: Settings, group: str, topic: str, partitions: list[int], timeout: float) -> dict[int, int | None]:
    """The group's committed offset per partition (AdminClient.list_consumer_group_offsets); None where it has none."""
    admin, errors = _admin(settings)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    try:
        answer = admin.list_consumer_group_offsets([request], request_timeout=timeout)[group].result()
    except KafkaException as exc:
        admin.poll(0)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, errors.cause(exc))) from exc
    return {tp.partition: (None if tp.offset == OFFSET_INVALID or tp.offset < 0 else tp.offset)
            for tp in answer.topic_partitions}


def compute_lag(topic: TopicOffsets, committed: dict[int, int | None]) -> list[PartitionLag]:
    """Per-partition lag = end offset − committed offset.

    A partition without a commit lags by everything retained (end − earliest):
    the job has not finished a batch over it yet, and would read all of it.
    """
    lags = []
    for partition, end in sorted(topic.latest.items()):
        position = committed.get(partition)
        start = position if position is not None else topic.earliest.get(partition, 0)
        lags.append(PartitionLag(topic.topic, partition, end, position, end - start))
    return lags


def group_lag(settings: Settings, topic: TopicOffsets, timeout: float) -> GroupLag:
    """The streaming job's lag on the users topic, from its consumer group's commits."""
    view = GroupLag(settings.spark_consumer_group, topic.topic)
    if topic.error:
        view.error = topic.error
        return view
    if not topic.exists:
        view.error = f"topic {topic.topic} does not exist yet"
        return view
    try:
        committed = committed_offsets(settings, view.group, topic.topic, sorted(topic.latest), timeout)
    except KafkaException as exc:
        view.error = reason(exc)
        return view
    view.partitions = compute_lag(topic, committed)
    return view


def dead_letter_counts(settings: Settings, timeout: float, scan_seconds: float) -> DeadLetterCounts:
    """Counts dead letters by `dead_letter.stage` and reason, reading the topic from beginning to end.

    A throwaway consumer with manual assignment and no commits, so no consumer
    group is left behind. Bounded by `scan_seconds`: a huge topic yields a
    partial count, flagged `complete=False`, rather than a hung status view.
    """
    topic = settings.dead_letter_topic
    errors = KafkaErrors()
    consumer = Consumer(kafka_conf(settings, errors, **{
        "group.id": f"userstream-status-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))
    try:
        return _scan_dead_letters(consumer, topic, timeout, scan_seconds)
    except KafkaException as exc:
        consumer.poll(0)
        return DeadLetterCounts(topic, complete=False, error=f"kafka down: {errors.cause(exc)}")
    finally:
        consumer.close()


def _scan_dead_letters(consumer: Consumer, topic: str, timeout: float, scan_seconds: float) -> DeadLetterCounts:
    metadata = consumer.list_topics(topic, timeout=timeout)
    topic_meta = metadata.topics.get(topic)
    if topic_meta is None or topic_meta.error is not None:
        return DeadLetterCounts(topic, exists=False)
    remaining: dict[int, int] = {}  # partition -> end offset still to reach
    assignment = []
    counts = DeadLetterCounts(topic)
    for partition in sorted(topic_meta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if high > low:
            remaining[partition] = high
            assignment.append(TopicPartition(topic, partition, low))
            counts.expected += high - low
    if not assignment:
        return counts
    consumer.assign(assignment)
    for message in read_to_watermarks(consumer, remaining, time.monotonic() + scan_seconds):
        count_dead_letter(counts, dead_letter.read_headers(message.headers()))
    counts.complete = not remaining
    return counts


def read_to_watermarks(consumer: Consumer, remaining: dict[int, int], deadline: float) -> Iterator[Any]:
    """Yield the assigned partitions' messages until each reaches its end offset in `remaining` or the deadline passes.

    `remaining` (partition -> end offset) is emptied as partitions finish, so a caller
    can tell afterwards whether it read everything (`not remaining`).
    """
    while remaining and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                remaining.pop(message.partition(), None)
                continue
            raise KafkaException(message.error())
        yield message
        if message.offset() + 1 >= remaining.get(message.partition(), 0):
            remaining.pop(message.partition(), None)


def count_dead_letter(counts: DeadLetterCounts, headers: dict[str, str]) -> None:
    """Tally one dead letter under its stage and reason (the monitor's metrics use the same tally)."""
    stage = headers.get(dead_letter.STAGE, "(no stage header)")
    why = headers.get(dead_letter.REASON, "(no reason header)")
    counts.by_stage[stage] = counts.by_stage.get(stage, 0) + 1
    stage_reasons = counts.by_reason.setdefault(stage, {})
    stage_reasons[why] = stage_reasons.get(why, 0) + 1
    counts.scanned += 1
