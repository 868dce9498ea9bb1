"""Users published at a steady rate from a thread while a fault is injected: the load of every fault case.

Values are encoded up front with confluent-kafka's AvroSerializer (the
registry may be the service that is down), then sent by the project's own
idempotent producer (producer.publish.make_producer) a few at a time, so the
job sees records arrive before, during and after the fault. Every delivery
report is checked: a record that never reached Kafka would make "Cassandra
holds exactly the produced users" prove nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError

from producer.publish import make_producer
from tests.spark.harness import Corner

FLUSH_SECONDS = 240  # a Kafka restart holds deliveries back; librdkafka retries them within message.timeout.ms (300 s)


@dataclass
class Load:
    """Sends `records` (key, value) to the corner's topic at `rate` per second until all are delivered."""

    corner: Corner
    records: Sequence[tuple[bytes, bytes]]
    rate: float
    producer_overrides: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    delivered: int = 0
    sent: int = 0  # records handed to the producer: all of them unless stop() cut the load short
    _thread: threading.Thread | None = None
    _error: BaseException | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()
        return self

    def _delivered(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")
        else:
            self.delivered += 1

    def _run(self) -> None:
        try:
            producer = make_producer(self.corner.settings, **self.producer_overrides)
            step = 0.25
            per_step = max(1, round(self.rate * step))
            topic = self.corner.settings.users_topic
            for start in range(0, len(self.records), per_step):
                if self._stopping.is_set():
                    break
                began = time.monotonic()
                for key, value in self.records[start:start + per_step]:
                    producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                    self.sent += 1
                producer.poll(0)
                time.sleep(max(0.0, step - (time.monotonic() - began)))
            left = producer.flush(FLUSH_SECONDS)
            if left:
                self.failures.append(f"{left} records still undelivered after {FLUSH_SECONDS} s")
        except BaseException as exc:  # re-raised by join() in the test's thread, where it fails the case
            self._error = exc

    def stop(self) -> None:
        """Send no more records (those sent are still delivered); `sent` says how many went."""
        self._stopping.set()

    def join(self, timeout: float) -> None:
        """Wait until every record was sent and acknowledged; fail on any delivery failure."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the load did not finish within {timeout:.0f} s ({self.delivered} delivered)"
        if self._error is not None:
            raise self._error
        assert not self.failures, f"deliveries failed: {self.failures[:5]}"
        assert self.delivered == self.sent, f"{self.delivered} of {self.sent} sent records delivered"
        assert self._stopping.is_set() or self.sent == len(self.records), f"{self.sent} of {len(self.records)} sent"

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()
