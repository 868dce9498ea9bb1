"""Which registry subject a schema lives under: one rule for the registration script, producers and Spark.

If the three disagreed, producers would publish with one subject's schema
while Spark read another's, so the naming strategy (SUBJECT_NAME_STRATEGY:
topic | record | topic_record, as Confluent's serializers name them) is
applied here only.
"""

from __future__ import annotations

import json
from typing import Any

from core.settings import REPO_ROOT, Settings

SCHEMAS_DIR = REPO_ROOT / "schemas"
USER_SCHEMA_FILE = SCHEMAS_DIR / "user.avsc"


def record_fullname(schema: Any) -> str:
    """`namespace.name` of a named schema ('' for unnamed ones: only the topic strategy applies)."""
    if not isinstance(schema, dict) or "name" not in schema:
        return ""
    name = schema["name"]
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


def subject_name(strategy: str, topic: str, record: str) -> str:
    """The subject a value schema lives under, as Confluent's serializers compute it."""
    if strategy == "topic":
        return f"{topic}-value"
    if not record:
        raise ValueError(f"subject name strategy {strategy!r} needs a named record schema")
    if strategy == "record":
        return record
    if strategy == "topic_record":
        return f"{topic}-{record}"
    raise ValueError(f"unknown subject name strategy {strategy!r}: use topic, record or topic_record")


def user_subject(settings: Settings, topic: str | None = None) -> str:
    """The value subject of the User schema for `topic` (default: the users topic)."""
    record = record_fullname(json.loads(USER_SCHEMA_FILE.read_text(encoding="utf-8")))
    return subject_name(settings.subject_name_strategy, topic or settings.users_topic, record)
