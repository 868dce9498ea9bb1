"""The one dead-letter format both halves of the pipeline write.

A record that cannot go on (the producer cannot map the API JSON to a `User`;
Spark cannot decode a Kafka message) is published to the dead-letter topic
instead of being dropped: the value is the original bytes, untouched, and the
headers say which stage gave up, why, and where the bytes came from. That is
enough to inspect, fix and replay it, and `make status` counts it by stage.
"""

from __future__ import annotations

STAGE = "dead_letter.stage"  # "transform" (producer), "decode" or "write" (Spark)
REASON = "dead_letter.reason"  # human-readable, names the field or check that failed
SOURCE = "dead_letter.source"  # data source URL+params, or "topic/partition/offset"
SCHEMA_ID = "dead_letter.schema_id"  # the writer schema id of the record's header, when it had a valid one
ORIGINAL_BYTES = "dead_letter.original_bytes"  # the record's full size, only when the value kept is a prefix of it

TRANSFORM = "transform"  # the producer could not turn the API's JSON into a User
DECODE = "decode"  # Spark could not decode or validate the Kafka record
WRITE = "write"  # Cassandra refused the decoded row (found by splitting the failing write)
STAGES = (TRANSFORM, DECODE, WRITE)


def headers(stage: str, reason: str, source: str) -> list[tuple[str, bytes]]:
    """Kafka headers for a dead-lettered record, in the order consumers expect."""
    return [
        (STAGE, stage.encode()),
        (REASON, reason.encode()),
        (SOURCE, source.encode()),
    ]


def read_headers(kafka_headers: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Decode the dead-letter headers of a consumed message into a dict."""
    return {key: (value or b"").decode() for key, value in (kafka_headers or []) if key.startswith("dead_letter.")}
