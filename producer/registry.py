"""Schema Registry plumbing shared by the registration script and the publisher.

- `load_schema_file()` reads and validates an `.avsc` file.
- `subject_name()` (from core.subjects) applies the subject naming strategy (topic | record | topic_record),
  the same way confluent-kafka's serializers do, so register and publish agree.
- `make_client()`, `RegistryUnavailable`, `REGISTRY_TRANSPORT_ERRORS` come from core.schema_registry
  (re-exported here), the one place every stage builds its registry client.
- `compatibility_problems()` explains *which fields* make a schema change incompatible:
  Apicurio's ccompat API ignores `verbose=true` (it answers only `{"is_compatible": false}`)
  and confluent-kafka's `test_compatibility()` returns only the bool, so the `avro`
  package's reader/writer compatibility checker decides, field by field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    lookup_writer_field,
)

from core.schema_registry import REGISTRY_TRANSPORT_ERRORS, RegistryUnavailable, make_client  # noqa: F401  (re-exported)
from core.subjects import SCHEMAS_DIR, record_fullname, subject_name  # noqa: F401  (re-exported)


class SchemaFileError(ValueError):
    """An .avsc file that is not valid JSON or not a valid Avro schema."""


@dataclass(frozen=True)
class SchemaFile:
    path: Path
    text: str  # registered as-is: Apicurio keeps the text, and lookups compare it canonically
    parsed: Any  # the JSON value
    fullname: str  # namespace.name of the top-level record (for record-based subject names)


def load_schema_file(path: Path) -> SchemaFile:
    """Read an .avsc and check it is a valid Avro schema before anything talks to the registry."""
    try:
        text = path.read_text(encoding="utf-8")
        parsed = json.loads(text)
    except (OSError, ValueError) as exc:
        raise SchemaFileError(f"{path}: cannot read as JSON: {exc}") from exc
    try:
        # fastavro is what serializes; avro is what checks compatibility: both must accept it.
        fastavro.parse_schema(parsed, _write_hint=False, _force=True)
        _parse(parsed)
    except Exception as exc:  # both libraries raise several unrelated types for bad schemas
        raise SchemaFileError(f"{path}: not a valid Avro schema: {exc}") from exc
    return SchemaFile(path=path, text=text, parsed=parsed, fullname=record_fullname(parsed))


# --- Compatibility explained field by field ---------------------------------
# The verdict for every reader/writer pair comes from the `avro` package's
# ReaderWriterCompatibilityChecker (the Python port of the Java checker the
# registry runs). It answers per pair with unordered sets of messages and
# locations, so when several fields break, which message belongs to which field
# is lost; `_explain` therefore only walks records field by field (matching
# fields with avro's own `lookup_writer_field`) to name each broken field.

# A problem is (field path, kind, writer type, reader type); worded by direction in compatibility_problems.
MISSING, TYPE = "missing", "type"
_NAMED = ("record", "error", "enum", "fixed")


def _qualified_aliases(node: Any, namespace: str | None = None) -> Any:
    """The schema JSON with every named type's aliases fully qualified.

    The Avro spec resolves an alias against its type's namespace (the Java checker
    does); avro 1.12's Python checker compares aliases with the writer's full name
    as written, so `"aliases": ["User"]` would not match `io.userstream.User`.
    """
    if isinstance(node, list):
        return [_qualified_aliases(branch, namespace) for branch in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if node.get("type") in _NAMED:
        name = str(node.get("name", ""))
        namespace = name.rpartition(".")[0] if "." in name else node.get("namespace", namespace)
        if "aliases" in node and namespace:
            node["aliases"] = [a if "." in a else f"{namespace}.{a}" for a in node["aliases"]]
        node["fields"] = [{**f, "type": _qualified_aliases(f.get("type"), namespace)} for f in node.get("fields", [])]
        return node
    for key in ("type", "items", "values"):
        if key in node:
            node[key] = _qualified_aliases(node[key], namespace)
    return node


def _parse(schema: Any) -> avro.schema.Schema:
    """A JSON schema value (dict, list or name) as the `avro` package's Schema."""
    return avro.schema.parse(json.dumps(_qualified_aliases(schema)))


def _label(schema: avro.schema.Schema) -> str:
    """How a type is named in a message: int, union[null, string], record User, array<long>."""
    if isinstance(schema, avro.schema.UnionSchema):
        return "union[" + ", ".join(_label(s) for s in schema.schemas) + "]"
    if isinstance(schema, avro.schema.NamedSchema):
        return f"{schema.type} {schema.name}"
    if isinstance(schema, avro.schema.ArraySchema):
        return f"array<{_label(schema.items)}>"
    if isinstance(schema, avro.schema.MapSchema):
        return f"map<{_label(schema.values)}>"
    return str(schema.type)


def _explain(reader: avro.schema.Schema, writer: avro.schema.Schema, path: str) -> list[tuple[str, str, str, str]]:
    """Why `reader` cannot read what `writer` wrote, one entry per broken field (avro decides, we name)."""
    verdict = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if verdict.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    same_record = (isinstance(reader, avro.schema.RecordSchema) and isinstance(writer, avro.schema.RecordSchema)
                   and SchemaIncompatibilityType.name_mismatch not in verdict.incompatibilities)
    if not same_record:
        return [(path, TYPE, _label(writer), _label(reader))]
    problems = []
    prefix = f"{path}." if path else ""
    for reader_field in reader.fields:
        writer_field = lookup_writer_field(writer_schema=writer, reader_field=reader_field)
        if writer_field is None:
            if not reader_field.has_default:
                problems.append((prefix + reader_field.name, MISSING, "", ""))
            continue
        problems += _explain(reader_field.type, writer_field.type, prefix + reader_field.name)
    return problems


def can_read(reader: Any, writer: Any) -> list[tuple[str, str, str, str]]:
    """Why data written with `writer` cannot be read with `reader` ([] when it can):
    (field path, MISSING | TYPE, writer type, reader type) per problem. Both are schema JSON values."""
    return _explain(_parse(reader), _parse(writer), "")


def compatibility_problems(old: Any, new: Any, level: str) -> list[str]:
    """Field-level reasons why `new` breaks `level` compatibility with `old` ([] when it does not).

    BACKWARD: consumers on the new schema read old data. FORWARD: consumers on
    the old schema read new data. FULL: both. *_TRANSITIVE is the same check
    applied to every earlier version (the caller passes each one). NONE: nothing.
    Each message starts with the field name, and always describes the change old -> new.
    """
    level = level.upper().removesuffix("_TRANSITIVE")
    problems: list[str] = []

    def what(path: str) -> str:
        return f"field '{path}'" if path else "the top-level schema"

    if level in ("BACKWARD", "FULL"):
        for path, kind, old_type, new_type in can_read(reader=new, writer=old):
            if kind == MISSING:
                problems.append(f"field '{path}' is new and has no default: data written with the old schema "
                                "has no value for it (give it a default, e.g. a nullable type with default null)")
            else:
                problems.append(f"{what(path)} changed type from {old_type} to {new_type}: the new schema "
                                "cannot read old data (not an Avro type promotion)")
    if level in ("FORWARD", "FULL"):
        for path, kind, new_type, old_type in can_read(reader=old, writer=new):
            if kind == MISSING:
                problems.append(f"field '{path}' was removed but has no default in the old schema: "
                                "consumers still on the old schema cannot read new data")
            else:
                problems.append(f"{what(path)} changed type from {old_type} to {new_type}: consumers on the "
                                "old schema cannot read new data (not an Avro type promotion)")
    return list(dict.fromkeys(problems))
