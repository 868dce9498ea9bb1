"""The pipeline's two topics, created where they are missing.

Both halves need them before they start: the producer writes to them, and
Spark's Kafka source fails on a topic that does not exist yet (its dead-letter
writes would block, then fail the batch). Creating them is idempotent, so the
producer, the Spark job and the demo all call this and whoever is first wins.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

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


def ensure_pipeline_topics(settings: Settings) -> list[str]:
    """The users topic and its dead-letter topic, with the configured partitions and replication."""
    topics = {settings.users_topic: settings.users_topic_partitions, settings.dead_letter_topic: settings.users_topic_partitions}
    return ensure_topics(AdminClient(settings.kafka_config()), topics, settings.users_topic_replication)
