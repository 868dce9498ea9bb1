"""Commit each batch's end offsets to a Kafka consumer group, so Kafka's own tools show the job's lag.

Spark's Kafka source keeps its offsets in the checkpoint and commits nothing
to Kafka, so `kafka-consumer-groups.sh --describe` and Control Center know
nothing of the job. After a batch is fully written (rows, dead letters,
progress file) the job commits the batch's end offsets (the next offset to
read per partition, Kafka's convention) to SPARK_CONSUMER_GROUP with the
admin API. The group has no members (the source reads with its own generated
group), which is what lets an admin client set its offsets. The checkpoint
stays the source of truth for where the job resumes; the group is a mirror.
"""

from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from core.settings import Settings

COMMIT_TIMEOUT_SECONDS = 30.0


class GroupCommitter:
    """alter_consumer_group_offsets for one group, with one long-lived admin client."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.group = settings.spark_consumer_group
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """Made at the first commit: an idle client would connect (and log) from the job's first second."""
        if self._admin is None:
            self._admin = AdminClient(self.settings.kafka_config())
        return self._admin

    def commit(self, end_offsets: dict[str, dict[str, int]]) -> None:
        """Set the group's offsets to these {"topic": {"partition": next offset}}; raise KafkaException on any error."""
        partitions = [TopicPartition(topic, int(partition), offset)
                      for topic, parts in end_offsets.items() for partition, offset in sorted(parts.items())]
        if not partitions:
            return
        request = [ConsumerGroupTopicPartitions(self.group, partitions)]
        futures = self.admin.alter_consumer_group_offsets(request, request_timeout=COMMIT_TIMEOUT_SECONDS)
        for future in futures.values():
            result = future.result()
            failed = [tp for tp in result.topic_partitions if tp.error is not None]
            if failed:
                raise KafkaException(failed[0].error)
