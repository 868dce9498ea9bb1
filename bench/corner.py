"""A benchmark's private corner of the shared stack: its own topics, subject, keyspace, checkpoint and group.

The embedded stack is shared (other engineers' tests, the demo's `users`
topic), so a benchmark never touches the configured names: every name gets
a random token, and everything is removed on exit, also when the run fails.

Use:
    with BenchCorner(load_settings(), "load", tmp_dir) as corner:
        corner.settings     # Settings pointing at the private names
        corner.job_env()    # the same as environment variables, for `python -m spark.stream_job`
"""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core import cassandra_schema
from core.settings import Settings
from core.subjects import USER_SCHEMA_FILE
from core.topics import ensure_pipeline_topics
from producer.register import register_all
from producer.registry import make_client


class BenchCorner:
    """Private names for one benchmark run, created on enter and removed on exit."""

    def __init__(self, base: Settings, name: str, scratch: Path, *, keyspace: bool = True):
        token = uuid.uuid4().hex[:8]
        topic = f"bench_{name}_{token}"
        self.with_keyspace = keyspace
        self.settings = base.model_copy(update={
            "users_topic": topic,
            "dead_letter_topic": f"{topic}.dead_letter",
            "cassandra_keyspace": topic,
            "cassandra_table": "users",
            "cassandra_replication": "SimpleStrategy:1",
            "spark_checkpoint_dir": str(scratch / "checkpoint"),
            "spark_consumer_group": f"{topic}-spark",
            "subject_name_strategy": "topic",
            "user_schema_version": "latest",
        })
        self.subject = f"{topic}-value"
        self.schema_id: int | None = None

    def __enter__(self) -> BenchCorner:
        s = self.settings
        ensure_pipeline_topics(s)
        [registration] = register_all(s, [USER_SCHEMA_FILE])
        self.subject, self.schema_id = registration.subject, registration.schema_id
        if self.with_keyspace:
            with cassandra_schema.connect(s) as session:
                cassandra_schema.apply(s, session)
        return self

    def __exit__(self, *exc_info) -> None:
        """Remove topics, subject and keyspace; every step runs, the first failure is raised after."""
        failures: list[Exception] = []
        for cleanup in (self._drop_keyspace, self._delete_topics, self._delete_subject):
            try:
                cleanup()
            except Exception as exc:  # collected and re-raised below: one failed cleanup must not skip the others
                failures.append(exc)
        if failures and exc_info[0] is None:
            raise failures[0]

    def job_env(self) -> dict[str, str]:
        """The corner as environment variables for a `python -m spark.stream_job` subprocess."""
        s = self.settings
        return {
            "USERS_TOPIC": s.users_topic,
            "DEAD_LETTER_TOPIC": s.dead_letter_topic,
            "CASSANDRA_KEYSPACE": s.cassandra_keyspace,
            "CASSANDRA_TABLE": s.cassandra_table,
            "SPARK_CHECKPOINT_DIR": s.spark_checkpoint_dir,
            "SPARK_CONSUMER_GROUP": s.spark_consumer_group,
            "SUBJECT_NAME_STRATEGY": s.subject_name_strategy,
            "USER_SCHEMA_VERSION": s.user_schema_version,
            "SPARK_STARTING_OFFSETS": "earliest",
        }

    def _drop_keyspace(self) -> None:
        if self.with_keyspace:
            with cassandra_schema.connect(self.settings) as session:
                session.execute(f"DROP KEYSPACE IF EXISTS {self.settings.cassandra_keyspace}")

    def _delete_topics(self) -> None:
        admin = AdminClient(self.settings.kafka_config())  # must outlive its futures
        names = [self.settings.users_topic, self.settings.dead_letter_topic]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()

    def _delete_subject(self) -> None:
        """Soft, then hard delete, as Confluent's API requires (Apicurio already forgets it at the soft delete)."""
        client = make_client(self.settings)
        client.delete_subject(self.subject)
        try:
            client.delete_subject(self.subject, permanent=True)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
