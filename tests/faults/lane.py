"""A fault case's lane through the private stack: its corner (topics, subject, keyspace, checkpoint) and its job.

Each lane is a tests.spark.harness.Corner made on the private stack, plus
the streaming job under the supervisor reading that corner, so cases do not
see each other's records, rows or dead letters, and a case that breaks its
job leaves the next case's job alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.serialization import MessageField, SerializationContext

from tests.faults.checks import Poison, assert_exactly_once, high_watermarks, seconds_to_catch_up, wait_drained
from tests.faults.job import SupervisedJob
from tests.faults.load import Load
from tests.faults.private_stack import PrivateStack
from tests.faults.table import FaultRow
from tests.spark.harness import Corner
from tests.spark.users import V1, make_user

# Generous: two cores shared with the rest of the suite, and a JVM start per job.
JOB_START_SECONDS = 300
CATCH_UP_SECONDS = 420
LOAD_SECONDS = 420

JOB_ENV = {
    "SPARK_MASTER": "local[2]",
    "SPARK_TRIGGER_INTERVAL": "2 seconds",
    "SPARK_MAX_OFFSETS_PER_TRIGGER": "300",  # several batches per case, so a kill lands between two of them
    # The product's default, not the harness's 1 s: a registry that restarts may answer 404 for a moment.
    "REGISTRY_NOT_FOUND_GRACE_SECONDS": "60",
}


@dataclass
class Lane:
    stack: PrivateStack
    corner: Corner
    job: SupervisedJob
    schema_id: int  # of V1, registered for the lane's subject

    @classmethod
    def create(cls, stack: PrivateStack, tmp_path: Path, name: str, **env: str) -> Lane:
        corner = Corner.create(tmp_path, name, base=stack.settings)
        schema_id = corner.register(V1)
        job_env = {**stack.env, **corner.env(), **JOB_ENV, **env}
        job = SupervisedJob(job_env, tmp_path / f"{name}-stream.log", corner.settings.spark_checkpoint_dir)
        return cls(stack, corner, job, schema_id)

    def start_job(self) -> None:
        self.job.start()
        self.job.wait_query_started(1, JOB_START_SECONDS)

    def users_under_load(self, row: FaultRow, count: int, rate: float) -> tuple[list[dict], Load]:
        """Start the job, then publish `count` new users at `rate` per second; the row counts them as produced."""
        self.start_job()
        users = [make_user(i, self.corner.settings.users_topic) for i in range(count)]
        row.users_produced = len(users)
        return users, self.load(self.encode(users), rate)

    def encode(self, users: list[dict], schema: dict = V1) -> list[tuple[bytes, bytes]]:
        """(key, Confluent-framed Avro value) per user, by confluent-kafka's AvroSerializer, looked up not registered."""
        serializer = self.corner.serializer(schema)
        context = SerializationContext(self.corner.settings.users_topic, MessageField.VALUE)
        return [(user["id"].encode(), serializer(user, context)) for user in users]

    def load(self, records: list[tuple[bytes, bytes]], rate: float, **producer_overrides) -> Load:
        return Load(self.corner, records, rate, dict(producer_overrides)).start()

    def catch_up(self, fault_ended: float, targets: dict[str, int] | None = None) -> float:
        """Seconds from the end of the fault until the job finished what the topic held at that moment (`targets`)."""
        return round(seconds_to_catch_up(self.corner, self.job, fault_ended, CATCH_UP_SECONDS, targets), 1)

    def watermarks(self) -> dict[str, int]:
        return high_watermarks(self.corner)

    def settle(self, row: FaultRow, users: list[dict], poison: list[Poison] = (), restarts: int = 0) -> None:
        """Drain the topic, fill the row's figures, then assert exactly-once, the restarts and a live job."""
        wait_drained(self.corner, self.job, CATCH_UP_SECONDS)
        rows = self.corner.rows()
        dead = self.corner.dead_letters(expected=len(poison), timeout=30)
        row.rows_landed, row.dead_lettered, row.job_restarts = len(rows), len(dead), self.job.restarts()
        assert_exactly_once(rows, dead, users, list(poison))
        assert self.job.restarts() == restarts, f"{self.job.restarts()} restarts, expected {restarts}\n{self.job.describe()}"
        assert self.job.alive(), f"the job is not running at the end\n{self.job.describe()}"

    def close(self) -> None:
        self.job.stop()
        self.corner.close()
