"""The pipeline's two topics, created where they are missing.

Both halves need them before they start: the producer writes to them, and
Spark's Kafka source fails on a topic that does not exist yet (its dead-letter
writes would block, then fail the batch). Creating them is idempotent, so the
producer, the Spark job and the demo all call this and whoever is first wins.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from core.security_hints import kafka_hint
from core.settings import Settings


class TopicError(RuntimeError):
    """Kafka cannot be asked about topics or refuses to create one; the message says what to do."""


def ensure_topics(admin: AdminClient, topics: dict[str, int], replication: int, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); return the ones created.

    Existing topics are left as they are (their partition count is not changed:
    that would move keys between partitions).
    """
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise TopicError(f"cannot list Kafka topics ({exc.args[0]}). Is Kafka running? "
                         "Start the stack with `make up`, or set KAFKA_BOOTSTRAP_SERVERS.") from exc
    missing = [NewTopic(name, num_partitions=partitions, replication_factor=replication)
               for name, partitions in topics.items() if name not in existing]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent creator is fine
                raise TopicError(f"cannot create topic {name!r}: {exc.args[0]}") from exc
    return created


class _ClientLog(logging.Handler):
    """librdkafka's own log and error callbacks, kept: a refused login or a protocol mismatch is told only there."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.logger = logging.getLogger(f"{__name__}.client.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def error(self, error: KafkaError) -> None:
        self.lines.append(error.str())


def ensure_pipeline_topics(settings: Settings) -> list[str]:
    """The users topic and its dead-letter topic, with the configured partitions and replication.

    A broker that refuses this client (wrong password, PLAINTEXT against a TLS
    listener) looks like "transport failure" to the admin call; the client's
    log says why, so the error names the setting to fix.
    """
    topics = {settings.users_topic: settings.users_topic_partitions, settings.dead_letter_topic: settings.users_topic_partitions}
    client_log = _ClientLog()
    admin = AdminClient({**settings.kafka_config(), "logger": client_log.logger, "error_cb": client_log.error})
    try:
        return ensure_topics(admin, topics, settings.users_topic_replication)
    except TopicError as exc:
        admin.poll(0)  # serves the log and error callbacks
        hint = kafka_hint(" ".join(client_log.lines))
        if hint:
            raise TopicError(f"Kafka at {settings.kafka_bootstrap_servers} refused this client: {hint}") from exc
        raise
