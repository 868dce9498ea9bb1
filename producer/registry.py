"""Schema Registry plumbing shared by the registration script and the publisher.

- `load_schema_file()` reads and validates an `.avsc` file.
- `subject_name()` (from core.subjects) applies the subject naming strategy (topic | record | topic_record),
  the same way confluent-kafka's serializers do, so register and publish agree.
- `make_client()`, `RegistryUnavailable`, `REGISTRY_TRANSPORT_ERRORS` come from core.schema_registry
  (re-exported here), the one place every stage builds its registry client.
- `compatibility_problems()` explains *which fields* make a schema change incompatible:
  Apicurio's ccompat API ignores `verbose=true` (it answers only `{"is_compatible": false}`)
  and confluent-kafka's `test_compatibility()` returns only the bool, so we diff the two
  schemas ourselves with Avro's schema-resolution rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

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
        fastavro.parse_schema(parsed, _write_hint=False, _force=True)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaFileError(f"{path}: not a valid Avro schema: {exc}") from exc
    return SchemaFile(path=path, text=text, parsed=parsed, fullname=record_fullname(parsed))


# --- Compatibility explained field by field ---------------------------------

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
# A problem is (field path, kind, writer type, reader type); worded by direction in compatibility_problems.
MISSING, TYPE = "missing", "type"
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _resolve(schema: Any, named: dict[str, Any], namespace: str | None) -> Any:
    """Normalise a schema node: a referenced name becomes its definition; named types get registered."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return {"type": schema}
        full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
        return named.get(full, named.get(schema, {"type": schema}))
    if isinstance(schema, list):
        return schema
    if isinstance(schema, dict):
        kind = schema.get("type")
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES and kind not in (
                "record", "error", "enum", "fixed", "array", "map")):
            return _resolve(kind, named, namespace)
        if kind in ("record", "error", "enum", "fixed"):
            named[record_fullname({**schema, "namespace": schema.get("namespace", namespace)})] = schema
        return schema
    return {"type": repr(schema)}


def _label(schema: Any) -> str:
    if isinstance(schema, list):
        return "union[" + ", ".join(_label(s) for s in schema) + "]"
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return f"{kind} {schema.get('name')}"
        if kind == "array":
            return f"array<{_label(schema.get('items'))}>"
        if kind == "map":
            return f"map<{_label(schema.get('values'))}>"
        return str(kind)
    return str(schema)


def _same_name(reader: dict, writer: dict) -> bool:
    """Avro resolves named types by unqualified name, or by one of the reader's aliases."""
    def short(name: Any) -> str:
        return str(name).rsplit(".", 1)[-1]

    return short(writer.get("name")) in {short(reader.get("name")), *map(short, reader.get("aliases", []))}


def _readable(reader: Any, writer: Any, path: str, rn: dict, wn: dict, rns: str | None, wns: str | None,
              seen: set) -> list[tuple[str, str, str, str]]:
    """Problems a reader with schema `reader` has decoding data written with `writer` (Avro resolution rules)."""
    reader = _resolve(reader, rn, rns)
    writer = _resolve(writer, wn, wns)
    if isinstance(writer, list):  # every branch the writer may have used must be readable
        problems = []
        for branch in writer:
            problems += _readable(reader, branch, path, rn, wn, rns, wns, seen)
        # Name the whole union, not the one branch that failed, when the problem is at this level.
        return [(p, k, _label(writer), _label(reader)) if p == path and k == TYPE else (p, k, w, r)
                for p, k, w, r in dict.fromkeys(problems)]
    if isinstance(reader, list):  # the writer's type must match some branch
        for branch in reader:
            if not _readable(branch, writer, path, rn, wn, rns, wns, seen):
                return []
        return [(path, TYPE, _label(writer), _label(reader))]
    rkind, wkind = reader.get("type"), writer.get("type")
    if rkind in _PRIMITIVES or wkind in _PRIMITIVES:
        if rkind == wkind or rkind in _PROMOTIONS.get(wkind, ()):
            return []
        return [(path, TYPE, _label(writer), _label(reader))]
    if rkind != wkind:
        return [(path, TYPE, _label(writer), _label(reader))]
    if rkind in ("record", "error", "enum", "fixed") and not _same_name(reader, writer):
        return [(path, TYPE, _label(writer), _label(reader))]
    if rkind in ("record", "error"):
        key = (id(reader), id(writer))
        if key in seen:  # recursive types
            return []
        seen = seen | {key}
        rns2 = reader.get("namespace", rns)
        wns2 = writer.get("namespace", wns)
        writer_fields = {f["name"]: f for f in writer.get("fields", [])}
        for f in writer.get("fields", []):
            for alias in f.get("aliases", []):
                writer_fields.setdefault(alias, f)
        problems = []
        prefix = f"{path}." if path else ""
        for field in reader.get("fields", []):
            match = writer_fields.get(field["name"]) or next(
                (writer_fields[a] for a in field.get("aliases", []) if a in writer_fields), None)
            if match is None:
                if "default" not in field:
                    problems.append((prefix + field["name"], MISSING, "", ""))
                continue
            problems += _readable(field["type"], match["type"], prefix + field["name"], rn, wn, rns2, wns2, seen)
        return problems
    if rkind == "enum":
        missing = sorted(set(writer.get("symbols", [])) - set(reader.get("symbols", [])))
        if missing and "default" not in reader:
            return [(path, TYPE, f"enum with {', '.join(missing)}", "enum without them (and no default)")]
        return []
    if rkind == "fixed":
        if reader.get("size") != writer.get("size"):
            return [(path, TYPE, f"fixed({writer.get('size')})", f"fixed({reader.get('size')})")]
        return []
    if rkind == "array":
        return _readable(reader.get("items"), writer.get("items"), f"{path}[]", rn, wn, rns, wns, seen)
    if rkind == "map":
        return _readable(reader.get("values"), writer.get("values"), f"{path}{{}}", rn, wn, rns, wns, seen)
    return []


def can_read(reader: Any, writer: Any) -> list[tuple[str, str, str, str]]:
    """Why data written with `writer` cannot be read with `reader` ([] when it can):
    (field path, MISSING | TYPE, writer type, reader type) per problem."""
    return _readable(reader, writer, "", {}, {}, None, None, set())


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
