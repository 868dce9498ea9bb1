"""Users -> Avro values in the Confluent wire format: AvroSerializer's bytes, at the cost of one fastavro write.

A value is byte 0 the magic 0, bytes 1-4 the schema id (big-endian), then
the Avro binary body: exactly what confluent-kafka's `AvroSerializer` writes
for the same User and registered schema (tests/producer/test_serialize.py
holds the two to the same bytes against the real registry).

Why not call AvroSerializer for every message: per call it resolves the
subject, asks the registry client's cache for the latest version (a lock and
an LRU lookup), walks the whole schema for inline tags, runs the rule
executors (domain, then encoding phase) even when the schema has no rules,
converts the object with `to_dict`, and frames the id through a BytesIO. On
20,000 users (`python -m bench.profile_producer`) that was 3,980 users/s
against 14,055 for the same bytes from `fastavro.schemaless_writer`: the
largest single cost of the producer.

What is kept of it: its schema lookup, done once per run by
`producer.publish.user_serializer` through the same registry client calls
with the same subject (`use.latest.version` -> `get_latest_version`, a pinned
version -> that version's id, as `use.schema.id`), so the id written is the
one the serializer writes; and the parse of that schema's text with fastavro,
which is what the serializer writes with. A schema whose registered version
carries domain or encoding rules, or references other schemas, gets the
AvroSerializer itself (`writer_for`): rules must run, references must be
resolved, and this writer does neither. (Apicurio's ccompat API stores no
rule sets, so on the embedded stack the fast writer is always the one used.)

Use:
    serializer = writer_for(client, subject, registered, pinned=False)
    value = serializer(user, ctx)       # b"\\x00" + schema id + Avro body
"""

from __future__ import annotations

import io
import json
import logging
import struct
from typing import Any

from confluent_kafka.schema_registry import RegisteredSchema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from fastavro import parse_schema, schemaless_writer

from producer.user import User, avro_fields, user_to_avro

log = logging.getLogger(__name__)
MAGIC_BYTE = 0


class UserAvroWriter:
    """Called like AvroSerializer, `(user, ctx) -> bytes`, for one registered schema looked up beforehand."""

    __slots__ = ("schema_id", "_header", "_schema")

    def __init__(self, registered: RegisteredSchema) -> None:
        self.schema_id: int = registered.schema_id
        self._header = struct.pack(">bI", MAGIC_BYTE, registered.schema_id)
        self._schema = parse_schema(json.loads(registered.schema.schema_str))

    def __call__(self, user: User, ctx: Any = None) -> bytes:
        """The framed value; ValueError/TypeError (from fastavro) when the schema cannot encode the user."""
        buffer = io.BytesIO()
        buffer.write(self._header)
        schemaless_writer(buffer, self._schema, avro_fields(user))  # reads the User's fields, changes nothing
        return buffer.getvalue()


def needs_avro_serializer(registered: RegisteredSchema) -> str | None:
    """Why this registered schema must be written by AvroSerializer itself (rules, references), or None."""
    schema = registered.schema
    rules = schema.rule_set
    if rules is not None and (rules.domain_rules or rules.encoding_rules):
        return "it carries domain or encoding rules, which must run for every message"
    if schema.references:
        return "it references other schemas, which AvroSerializer resolves"
    return None


def writer_for(client: SchemaRegistryClient, subject: str, registered: RegisteredSchema,
               *, pinned: bool) -> UserAvroWriter | AvroSerializer:
    """The value serializer for `registered` (the schema the lookup found under `subject`).

    `pinned`: USER_SCHEMA_VERSION names a version (AvroSerializer's `use.schema.id`)
    rather than `latest` (`use.latest.version`); both write `registered.schema_id`.
    """
    reason = needs_avro_serializer(registered)
    if reason is None:
        return UserAvroWriter(registered)
    log.info("schema id %s of subject %s: AvroSerializer writes every message (slower), because %s",
             registered.schema_id, subject, reason)
    conf: dict[str, Any] = {
        "auto.register.schemas": False,
        # The subject is decided once (settings.subject_name_strategy), so register and publish agree.
        "subject.name.strategy": lambda ctx, record_name: subject,
    }
    if pinned:
        conf["use.schema.id"] = registered.schema_id
    else:
        conf["use.latest.version"] = True
    return AvroSerializer(client, schema_str=None, to_dict=user_to_avro, conf=conf)
