"""Register the pipeline's Avro schemas in the Schema Registry (the only writer of schemas).

Producers run with `auto.register.schemas=False`, so a schema reaches the
registry only through this script, after a compatibility check:

  1. read and validate each `schemas/*.avsc`;
  2. work out its subject (`<topic>-value` by default; SUBJECT_NAME_STRATEGY =
     topic | record | topic_record; `--subject` overrides);
  3. set the subject's compatibility level (SCHEMA_COMPATIBILITY, default BACKWARD);
  4. if this exact schema is already registered, say so (same id and version): idempotent;
  5. otherwise test it against the latest version and refuse an incompatible
     change, naming the offending fields; then register it.

Usage:
    python -m producer.register                 # or: make register
    python -m producer.register --dry-run       # check only; change nothing
    python -m producer.register --schema schemas/user.avsc --topic users --compatibility FULL
    python -m producer.register --subject my-subject

Exit status: 0 on success (registered or already registered), 1 on any
failure (registry unreachable, incompatible change, bad schema file), 2 on bad
arguments. Settings come from the environment (see core/settings.py):
SCHEMA_REGISTRY_URL, SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO, USERS_TOPIC, ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.schema_registry import is_not_found
from core.settings import Settings, load_settings
from producer.registry import (
    REGISTRY_TRANSPORT_ERRORS,
    SCHEMAS_DIR,
    RegistryUnavailable,
    SchemaFile,
    SchemaFileError,
    compatibility_problems,
    load_schema_file,
    make_client,
    subject_name,
)

COMPATIBILITY_LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
                        "FULL", "FULL_TRANSITIVE", "NONE")
SUBJECT_NOT_FOUND = 40401
SCHEMA_NOT_FOUND = 40403


class RegistrationError(RuntimeError):
    """Registration refused or failed; the message says why and what to do."""


class IncompatibleSchemaError(RegistrationError):
    """The new schema breaks the subject's compatibility level; `problems` names the fields."""

    def __init__(self, subject: str, path: Path, level: str, problems: list[str], registry_message: str = "") -> None:
        lines = [f"{path} is not {level}-compatible with the latest version of subject '{subject}'; not registered."]
        if problems:
            lines += [f"  - {problem}" for problem in problems]
        else:
            lines.append("  (the registry refused it, and the local field-by-field check found no difference; "
                         f"compare with GET /subjects/{subject}/versions/latest)")
        if registry_message:
            lines.append(f"  registry said: {registry_message}")
        lines.append("Fix the schema (add defaults, keep types), or register it under a new subject/topic.")
        super().__init__("\n".join(lines))
        self.subject = subject
        self.problems = problems


@dataclass(frozen=True)
class Registration:
    """Outcome for one schema file."""

    subject: str
    path: Path
    status: str  # "registered" | "already registered" | "would register" (dry run)
    schema_id: int | None
    version: int | None

    def describe(self) -> str:
        ident = "" if self.schema_id is None else f" id={self.schema_id} version={self.version}"
        return f"{self.status}: subject={self.subject}{ident} ({self.path})"


def current_compatibility(client: SchemaRegistryClient, subject: str) -> str | None:
    """The subject's own compatibility level, or None when it has none yet."""
    try:
        return client.get_compatibility(subject)
    except SchemaRegistryError as error:
        if is_not_found(error):  # Apicurio: 40401 until the subject or its config exists
            return None
        raise


def ensure_compatibility(client: SchemaRegistryClient, subject: str, level: str, dry_run: bool) -> str:
    """Set the subject's compatibility level before testing, so the test uses the level we mean.

    Apicurio's ccompat API accepts PUT /config/{subject} even before the subject
    exists, like Confluent's registry does.
    """
    if current_compatibility(client, subject) != level and not dry_run:
        client.set_compatibility(subject, level)
    return level


def find_registered(client: SchemaRegistryClient, subject: str, schema: Schema):
    """The registered version of exactly this schema under the subject, or None.

    Apicurio compares canonical content here, so whitespace or key order in the
    file does not make an already-registered schema look new.
    """
    try:
        return client.lookup_schema(subject, schema)
    except SchemaRegistryError as error:
        if is_not_found(error, SUBJECT_NOT_FOUND, SCHEMA_NOT_FOUND):
            return None
        raise


def previous_versions(client: SchemaRegistryClient, subject: str, level: str) -> list:
    """The versions the new schema must be compatible with: the latest, or all for *_TRANSITIVE levels."""
    try:
        latest = client.get_latest_version(subject)
    except SchemaRegistryError as error:
        if is_not_found(error, SUBJECT_NOT_FOUND):
            return []  # a new subject: nothing to be compatible with
        raise
    if not level.endswith("_TRANSITIVE"):
        return [latest]
    return [client.get_version(subject, version) for version in client.get_versions(subject)]


def check_compatible(client: SchemaRegistryClient, subject: str, schema_file: SchemaFile, level: str) -> None:
    """Ask the registry; if it says no, explain which fields, and raise.

    The registry is the authority (it is what enforces the rule on register).
    POST /compatibility/subjects/{s}/versions/latest?verbose=true: Apicurio's
    ccompat API ignores `verbose` and answers only {"is_compatible": false},
    and confluent-kafka's test_compatibility() returns only that bool, so the
    field names come from our own diff of the schemas (registry.compatibility_problems).
    """
    previous = previous_versions(client, subject, level)
    if not previous or level == "NONE":
        return
    schema = Schema(schema_file.text, "AVRO")
    if level.endswith("_TRANSITIVE"):
        compatible = client.test_compatibility_all_versions(subject, schema, verbose=True)
    else:
        compatible = client.test_compatibility(subject, schema, version="latest", verbose=True)
    if compatible:
        return
    problems: list[str] = []
    for registered in previous:
        for problem in compatibility_problems(json.loads(registered.schema.schema_str), schema_file.parsed, level):
            problems.append(problem if len(previous) == 1 else f"(vs version {registered.version}) {problem}")
    raise IncompatibleSchemaError(subject, schema_file.path, level, problems)


def register_schema_file(
    client: SchemaRegistryClient, schema_file: SchemaFile, subject: str, level: str, dry_run: bool = False
) -> Registration:
    """Steps 3-5 of the module docstring for one schema; returns what happened."""
    ensure_compatibility(client, subject, level, dry_run)
    schema = Schema(schema_file.text, "AVRO")
    found = find_registered(client, subject, schema)
    if found is not None:
        return Registration(subject, schema_file.path, "already registered", found.schema_id, found.version)
    check_compatible(client, subject, schema_file, level)
    if dry_run:
        return Registration(subject, schema_file.path, "would register", None, None)
    try:
        client.register_schema(subject, schema)
    except SchemaRegistryError as error:
        if error.http_status_code == 409:  # the registry's own rule check refused it
            previous = previous_versions(client, subject, level)
            problems = [p for r in previous
                        for p in compatibility_problems(json.loads(r.schema.schema_str), schema_file.parsed, level)]
            raise IncompatibleSchemaError(subject, schema_file.path, level, problems, error.error_message) from error
        raise
    # Apicurio's POST /subjects/{s}/versions answers only {"id": N} (no version), so look it up.
    registered = client.lookup_schema(subject, schema)
    return Registration(subject, schema_file.path, "registered", registered.schema_id, registered.version)


def plan_subjects(files: Sequence[SchemaFile], strategy: str, topic: str, subject: str | None) -> list[tuple[SchemaFile, str]]:
    """(schema, subject) pairs; refuse two schemas landing in one subject (they would fight over versions)."""
    pairs = [(f, subject or subject_name(strategy, topic, f.fullname)) for f in files]
    seen: dict[str, Path] = {}
    for schema_file, name in pairs:
        if name in seen:
            raise RegistrationError(
                f"{seen[name]} and {schema_file.path} would both be registered under subject '{name}'. "
                "Register one file at a time (--schema), or use --strategy record / topic_record."
            )
        seen[name] = schema_file.path
    return pairs


def register_all(settings: Settings, paths: Sequence[Path], *, subject: str | None = None, topic: str | None = None,
                 strategy: str | None = None, compatibility: str | None = None, dry_run: bool = False,
                 client: SchemaRegistryClient | None = None) -> list[Registration]:
    """Register every schema file; the library form of the CLI (raises on failure)."""
    files = [load_schema_file(path) for path in paths]
    if not files:
        raise RegistrationError(f"no .avsc files given (looked in {SCHEMAS_DIR})")
    level = (compatibility or settings.schema_compatibility).upper()
    if level not in COMPATIBILITY_LEVELS:
        raise RegistrationError(f"unknown compatibility level {level!r}; use one of {', '.join(COMPATIBILITY_LEVELS)}")
    pairs = plan_subjects(files, strategy or settings.subject_name_strategy, topic or settings.users_topic, subject)
    client = client or make_client(settings)
    try:
        return [register_schema_file(client, f, name, level, dry_run) for f, name in pairs]
    except REGISTRY_TRANSPORT_ERRORS as exc:
        raise RegistryUnavailable(settings.schema_registry_url, exc) from exc
    except SchemaRegistryError as error:
        if error.http_status_code in (401, 403):
            raise RegistrationError(
                f"the Schema Registry at {settings.schema_registry_url} refused our credentials "
                f"({error.error_message}); set SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=user:password"
            ) from error
        raise RegistrationError(
            f"the Schema Registry at {settings.schema_registry_url} answered HTTP {error.http_status_code} "
            f"(code {error.error_code}): {error.error_message}"
        ) from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m producer.register",
        description="Register schemas/*.avsc in the Schema Registry after a compatibility check.",
    )
    parser.add_argument("--schema", action="append", type=Path, metavar="PATH",
                        help=f"an .avsc file to register (repeatable; default: every {SCHEMAS_DIR}/*.avsc)")
    parser.add_argument("--subject", help="register under this subject instead of the strategy's name")
    parser.add_argument("--topic", help="topic for topic-based subject names (default: USERS_TOPIC)")
    parser.add_argument("--strategy", choices=("topic", "record", "topic_record"),
                        help="subject name strategy (default: SUBJECT_NAME_STRATEGY)")
    parser.add_argument("--compatibility", type=str.upper, choices=COMPATIBILITY_LEVELS,
                        help="compatibility level to set on the subject (default: SCHEMA_COMPATIBILITY)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check compatibility and report what would happen; change nothing")
    return parser


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """CLI entry; returns the exit status (tests call it directly)."""
    args = build_parser().parse_args(argv)
    settings = settings or load_settings()
    paths = args.schema or sorted(SCHEMAS_DIR.glob("*.avsc"))
    try:
        registrations = register_all(settings, paths, subject=args.subject, topic=args.topic, strategy=args.strategy,
                                     compatibility=args.compatibility, dry_run=args.dry_run)
    except (RegistrationError, RegistryUnavailable, SchemaFileError, ValueError) as exc:
        print(f"register: error: {exc}", file=sys.stderr)
        return 1
    for registration in registrations:
        print(registration.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
