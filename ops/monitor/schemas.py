"""Subjects and their versions, and a field-by-field diff between two versions of one subject.

The diff lists every field of either version as added, removed, changed (type,
default or doc) or unchanged, and asks the Avro library's own compatibility
checker (avro.compatibility, the Java checker's port) whether data written with
the older version can be read with the newer one (BACKWARD, the registry's
rule), with the reasons when it cannot.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from core.health import registry_client
from core.settings import Settings

_MISSING = object()


class SchemaDiffError(ValueError):
    """The two versions cannot be compared (not records, not found); the message says which."""


def _field_view(field: dict[str, Any] | None) -> dict[str, Any] | None:
    if field is None:
        return None
    view = {"type": field["type"], "default": field.get("default", _MISSING), "doc": field.get("doc")}
    view["has_default"] = view["default"] is not _MISSING
    if not view["has_default"]:
        view["default"] = None
    return view


def diff_fields(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field of either record: name, change (added/removed/changed/unchanged), what changed, both sides."""
    for schema in (old, new):
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise SchemaDiffError("only record schemas have fields to compare")
    before = {f["name"]: f for f in old["fields"]}
    after = {f["name"]: f for f in new["fields"]}
    order = [f["name"] for f in old["fields"]] + [f["name"] for f in new["fields"] if f["name"] not in before]
    rows = []
    for name in order:
        a, b = _field_view(before.get(name)), _field_view(after.get(name))
        if a is None:
            change, what = "added", []
        elif b is None:
            change, what = "removed", []
        else:
            what = [key for key in ("type", "default", "doc") if a[key] != b[key] or (key == "default" and a["has_default"] != b["has_default"])]
            change = "changed" if what else "unchanged"
        rows.append({"name": name, "change": change, "what": what, "from": a, "to": b})
    return rows


def backward_compatible(old_text: str, new_text: str) -> tuple[bool, list[str]]:
    """Can the new version (reader) read data written with the old one (writer)? And if not, why."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(avro.schema.parse(new_text), avro.schema.parse(old_text))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return True, []
    return False, sorted(set(result.messages)) or [str(i) for i in result.incompatibilities]


def subjects(settings: Settings, timeout: float) -> list[dict[str, Any]]:
    """Every subject with its versions and the schema id of each version."""
    client = registry_client(settings, timeout)
    listing = []
    for subject in sorted(client.get_subjects()):
        versions = sorted(client.get_versions(subject))
        ids = {v: client.get_version(subject, v).schema_id for v in versions}
        listing.append({"subject": subject, "versions": versions, "ids": ids})
    return listing


def diff(settings: Settings, subject: str, old_version: int, new_version: int, timeout: float) -> dict[str, Any]:
    """The diff between two registered versions of `subject`, with the compatibility verdict."""
    client = registry_client(settings, timeout)
    old, new = client.get_version(subject, old_version), client.get_version(subject, new_version)
    old_text, new_text = old.schema.schema_str, new.schema.schema_str
    compatible, problems = backward_compatible(old_text, new_text)
    return {
        "subject": subject,
        "from": {"version": old.version, "id": old.schema_id},
        "to": {"version": new.version, "id": new.schema_id},
        "fields": diff_fields(json.loads(old_text), json.loads(new_text)),
        "backward_compatible": compatible,
        "problems": problems,
    }
