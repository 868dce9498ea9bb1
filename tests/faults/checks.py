"""What every fault case asserts at the end: each user exactly once, in Cassandra or on the dead-letter topic.

Cassandra must hold exactly the produced users, field by field
(tests.spark.harness.assert_rows_match); every poison record is on the
dead-letter topic exactly once, with its stage and reason; no user is both
written and dead-lettered, and nothing else is dead-lettered. Both sides are
read in full: every row of the case's table, every dead letter up to the
topic's high watermarks (harness.Corner.rows / dead_letters).

The catch-up time is measured from the job's own progress file: the job has
caught up when its end offsets reach the high watermarks the topic had at the
end of the fault.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from core import dead_letter
from tests.faults.job import SupervisedJob
from tests.spark.harness import Corner, assert_rows_match


@dataclass(frozen=True)
class Poison:
    """A record that must be dead-lettered once: its key (the user id), the stage, a piece of the reason."""

    key: str
    stage: str
    reason: str  # "" when the wording is the component's own: any non-empty reason then
    value: bytes | None = None  # the bytes as produced, when the dead letter must carry them unchanged
    original_bytes: int | None = None  # the record's full size when the dead letter keeps only `value`, a prefix


def high_watermarks(corner: Corner) -> dict[str, int]:
    """The users topic's next offset per partition, as the progress file spells partitions."""
    topic = corner.settings.users_topic
    consumer = Consumer({**corner.settings.kafka_config(), "group.id": "unused", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return {str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    finally:
        consumer.close()


def lag(corner: Corner, job: SupervisedJob, targets: dict[str, int]) -> int:
    """Records below `targets` the job has not finished yet, per its progress file."""
    done = ((job.progress() or {}).get("end_offsets") or {}).get(corner.settings.users_topic) or {}
    return sum(max(0, end - done.get(partition, 0)) for partition, end in targets.items())


def seconds_to_catch_up(corner: Corner, job: SupervisedJob, fault_ended: float, timeout: float,
                        targets: dict[str, int] | None = None) -> float:
    """From `fault_ended` (monotonic) until the job has finished every record the topic held then.

    `targets` are the high watermarks taken at the end of the fault (default: now).
    """
    targets = targets if targets is not None else high_watermarks(corner)
    deadline = time.monotonic() + timeout
    while lag(corner, job, targets):
        assert job.supervisor.poll() is None, f"the supervisor exited {job.supervisor.returncode}\n{job.describe()}"
        assert time.monotonic() < deadline, (
            f"the job still lags {lag(corner, job, targets)} records behind {targets} after {timeout:.0f} s\n{job.describe()}"
        )
        time.sleep(0.5)
    return time.monotonic() - fault_ended


def wait_drained(corner: Corner, job: SupervisedJob, timeout: float) -> None:
    """Until the job has finished everything on the topic now (the load is over)."""
    seconds_to_catch_up(corner, job, time.monotonic(), timeout)


def assert_exactly_once(rows: dict[str, dict[str, Any]], dead_letters: list[Any], users: list[dict],
                        poison: list[Poison]) -> None:
    """Rows are exactly `users` (every field); each poison record is dead-lettered once; nothing else is."""
    assert_rows_match(rows, users)
    keys = Counter((message.key() or b"").decode("utf-8", "replace") for message in dead_letters)
    for record in poison:
        assert keys[record.key] == 1, f"poison {record.key} dead-lettered {keys[record.key]} times, not once"
        message = next(m for m in dead_letters if (m.key() or b"").decode("utf-8", "replace") == record.key)
        headers = dead_letter.read_headers(message.headers())
        assert headers.get(dead_letter.STAGE) == record.stage, f"poison {record.key}: {headers}"
        assert headers.get(dead_letter.REASON) and record.reason in headers[dead_letter.REASON], f"poison {record.key}: {headers}"
        if record.value is not None:
            assert message.value() == record.value, f"poison {record.key}: the dead letter does not carry the original bytes"
        expected_size = None if record.original_bytes is None else str(record.original_bytes)
        assert headers.get(dead_letter.ORIGINAL_BYTES) == expected_size, f"poison {record.key}: {headers}"
    unexpected = set(keys) - {record.key for record in poison}
    assert not unexpected, f"{len(unexpected)} records dead-lettered that should not be, e.g. {sorted(unexpected)[:3]}"
    both = set(keys) & set(rows)
    assert not both, f"written and dead-lettered: {sorted(both)[:3]}"
