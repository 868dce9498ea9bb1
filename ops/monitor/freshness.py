"""Freshness: how long the oldest record the job has not written yet has been waiting, in seconds.

Offsets say how many records wait; freshness says for how long, which is what
a reader of Cassandra feels. Per partition with lag, the record at the
group's committed offset is the oldest one not yet written: its Kafka
timestamp against now is that partition's delay (what Burrow and
kafka-lag-exporter call lag in time). A caught-up job has freshness 0.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from core.health import KafkaErrors, kafka_conf
from core.settings import Settings
from ops.status.kafka import GroupLag


def waiting_positions(lag: GroupLag) -> list[TopicPartition]:
    """Per partition with lag, the offset of the oldest record the job has not written (end − lag)."""
    return [TopicPartition(p.topic, p.partition, p.end_offset - p.lag) for p in lag.partitions if p.lag > 0]


def oldest_waiting_ms(settings: Settings, positions: list[TopicPartition], timeout: float) -> int | None:
    """The Kafka timestamp (ms) of the oldest record at `positions`; None when none could be read in time."""
    consumer = Consumer(kafka_conf(settings, KafkaErrors(), **{
        "group.id": f"userstream-monitor-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    try:
        consumer.assign(positions)
        waiting = {tp.partition for tp in positions}
        oldest = None
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() or message.partition() not in waiting:
                continue  # an error here (EOF, a deleted record) leaves the partition to the next sample
            waiting.discard(message.partition())
            consumer.pause([TopicPartition(message.topic(), message.partition())])
            stamp = message.timestamp()[1]
            oldest = stamp if oldest is None else min(oldest, stamp)
        return oldest
    finally:
        consumer.close()


def freshness_seconds(settings: Settings, lag: GroupLag, timeout: float, now: float | None = None) -> float | None:
    """Seconds the oldest waiting record has waited; 0 when caught up; None when lag is unknown."""
    if lag.error or not lag.partitions:
        return None
    positions = waiting_positions(lag)
    if not positions:
        return 0.0
    try:
        oldest = oldest_waiting_ms(settings, positions, timeout)
    except KafkaException:
        return None  # Kafka went away between the lag and this read: unknown, and the lag section says why
    return None if oldest is None else max(0.0, (now or time.time()) - oldest / 1000)
