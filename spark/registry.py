"""Schemas from the Schema Registry: the writer schema of each record, and the reader schema.

Every Kafka record names the schema it was written with (bytes 1-4 of the
Confluent wire format). The decoder needs that exact writer schema, fetched
by id with `GET /schemas/ids/{id}` and cached forever (an id's schema never
changes), plus one reader schema that every record is resolved into: the
subject's latest version, or the version pinned by USER_SCHEMA_VERSION.

New ids show up mid-stream when a producer starts writing a new version, so
the book is updated from the ids seen in each batch; a new id also re-reads
the latest reader version, which is how a registered v2 becomes the shape
rows are written in without a restart.

Lookups go through confluent-kafka's SchemaRegistryClient (the same client
the producer uses), so any Confluent-compatible registry works (Confluent,
Apicurio's /apis/ccompat/v7, Karapace).

A "not found" for a schema id is not final at once: a registry restarting
with in-memory storage, a replica that has not caught up, or a producer that
registered a moment ago can all answer 404 for an id that is about to exist.
So an id is declared unknown (its records dead-lettered) only after it has
been missing for `not_found_grace` seconds (REGISTRY_NOT_FOUND_GRACE_SECONDS);
until then `update` raises SchemaNotFoundYet and the job retries the batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.schema_registry import REGISTRY_TRANSPORT_ERRORS, is_not_found, make_client
from core.settings import Settings

log = logging.getLogger(__name__)

# (reader schema JSON, writer schema JSON) -> None if Avro can resolve writer data into the reader, else why not.
CompatibilityCheck = Callable[[str, str], "str | None"]


class RegistryError(RuntimeError):
    """The registry could not be asked, or answered something the pipeline cannot use."""


class RegistryUnreachable(RegistryError):
    """The registry did not answer, or answered 408/429/5xx after the client's own retries: worth waiting for."""


class SchemaNotFoundYet(RegistryError):
    """Schema ids the registry does not know yet, still within the not-found grace: wait, do not dead-letter."""

    def __init__(self, ids: list[int], url: str, grace: float):
        super().__init__(f"schema id(s) {', '.join(map(str, ids))} not found at {url}; "
                         f"waiting up to {grace:.0f} s (REGISTRY_NOT_FOUND_GRACE_SECONDS) for them to be registered")
        self.ids = ids


@dataclass(frozen=True)
class RegisteredSchema:
    """One schema as the registry knows it."""

    id: int
    schema: str
    subject: str | None = None
    version: int | None = None
    schema_type: str = "AVRO"

    @property
    def fields(self) -> list[dict]:
        return json.loads(self.schema)["fields"]


class RegistryClient:
    """The two lookups the consumer needs, through confluent-kafka's SchemaRegistryClient.

    The library retries a registry that restarts or is briefly busy and caches
    schemas by id; this adapter only turns its answers into what SchemaBook
    needs (a 404 for an id is a poison record, not a failure) and its errors
    into messages that say what to do.
    """

    def __init__(self, client: SchemaRegistryClient):
        self.client = client
        self.url = client.config()["url"]

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        return cls(make_client(settings))

    def _unreachable(self, what: str, exc: BaseException) -> RegistryError:
        return RegistryUnreachable(
            f"schema registry at {self.url} did not answer {what} ({type(exc).__name__}: {exc}); is it running? "
            "`python -m stack status` shows the embedded stack"
        )

    def _refused(self, what: str, error: SchemaRegistryError) -> RegistryError:
        """An error answer; a busy or failing registry (408, 429, 5xx) is worth waiting for, the rest is not."""
        busy = error.http_status_code in (408, 429) or error.http_status_code >= 500
        return (RegistryUnreachable if busy else RegistryError)(f"{self.url}: {what}: {error}")

    def schema_by_id(self, schema_id: int) -> RegisteredSchema | None:
        """The schema registered under an id, or None when the registry has no such id (HTTP 404)."""
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if is_not_found(error):
                return None
            raise self._refused(f"schema id {schema_id}", error) from error
        except REGISTRY_TRANSPORT_ERRORS as exc:
            raise self._unreachable(f"GET /schemas/ids/{schema_id}", exc) from exc
        return RegisteredSchema(id=schema_id, schema=schema.schema_str, schema_type=schema.schema_type or "AVRO")

    def subject_version(self, subject: str, version: str = "latest") -> RegisteredSchema:
        """A subject's version ("latest" or a number); a missing subject says how to register it.

        get_version("latest") always asks the registry (the library caches only
        numbered versions), which is what lets a newly registered version
        become the reader mid-stream.
        """
        try:
            registered = self.client.get_version(subject, version if version == "latest" else int(version))
        except SchemaRegistryError as error:
            if is_not_found(error):
                raise RegistryError(
                    f"subject {subject!r} has no version {version} at {self.url}: register the schema first (`make register`)"
                ) from error
            raise self._refused(f"subject {subject!r} version {version}", error) from error
        except REGISTRY_TRANSPORT_ERRORS as exc:
            raise self._unreachable(f"GET /subjects/{subject}/versions/{version}", exc) from exc
        return RegisteredSchema(id=registered.schema_id, schema=registered.schema.schema_str, subject=subject,
                                version=registered.version)


@dataclass(frozen=True)
class SchemaSnapshot:
    """Everything decode needs for one batch, fixed for the duration of the batch."""

    reader: RegisteredSchema
    writers: dict[int, str]  # usable writer schema JSON by id
    unknown: frozenset[int]  # ids the registry does not have
    incompatible: dict[int, str]  # ids whose schema cannot be resolved into the reader, with Avro's reason


@dataclass
class SchemaBook:
    """Writer schemas by id (cached), the current reader, and which writers it cannot read."""

    client: RegistryClient
    subject: str
    reader_version: str
    compatibility: CompatibilityCheck
    reader: RegisteredSchema | None = None
    writers: dict[int, str] = field(default_factory=dict)
    incompatible: dict[int, str] = field(default_factory=dict)
    foreign: dict[int, str] = field(default_factory=dict)  # ids of non-Avro schemas, never readable
    not_found_grace: float = 0.0  # seconds an id may be missing before its records are dead-lettered
    clock: Callable[[], float] = time.monotonic
    missing_since: dict[int, float] = field(default_factory=dict)  # first "not found" per id

    def load_reader(self) -> bool:
        """(Re)read the reader version; True when it changed, so column checks must be redone."""
        reader = self.client.subject_version(self.subject, self.reader_version)
        if self.reader is not None and reader.id == self.reader.id:
            return False
        log.info("reader schema: subject %s version %s (id %s)", reader.subject, reader.version, reader.id)
        self.reader = reader
        self.writers.setdefault(reader.id, reader.schema)  # the reader's own id is a writer the book knows too
        self.incompatible = {
            sid: why for sid, schema in self.writers.items() if (why := self.foreign.get(sid) or self._why_unreadable(schema))
        }
        return True

    def _why_unreadable(self, writer_schema: str) -> str | None:
        return self.compatibility(self.reader.schema, writer_schema)

    def covers(self, schema_ids: Iterable[int]) -> bool:
        """True when every id is already known (readable or not): decoding with `known()` then needs no registry call."""
        return self.reader is not None and set(schema_ids) <= set(self.writers)

    def known(self) -> SchemaSnapshot:
        """The snapshot of what the book already holds, without asking the registry.

        The stream decodes each batch with it first and asks the registry only
        when the batch carries an id the book has not seen (spark/batch.py).
        """
        usable = {sid: schema for sid, schema in self.writers.items() if sid not in self.incompatible}
        return SchemaSnapshot(self.reader, usable, frozenset(), dict(self.incompatible))

    def update(self, schema_ids: Iterable[int]) -> tuple[SchemaSnapshot, bool]:
        """Fetch the ids not seen before; return the batch's snapshot and whether the reader changed."""
        reader_changed = self.reader is None and self.load_reader()
        new_ids = sorted(set(schema_ids) - set(self.writers))
        unknown, pending = set(), []
        for schema_id in new_ids:
            registered = self.client.schema_by_id(schema_id)
            if registered is None:
                first = self.missing_since.setdefault(schema_id, self.clock())
                if self.clock() - first < self.not_found_grace:
                    pending.append(schema_id)
                else:
                    unknown.add(schema_id)
                continue
            self.missing_since.pop(schema_id, None)
            self.writers[schema_id] = registered.schema
            log.info("writer schema id %s (%s) fetched from the registry", schema_id, registered.schema_type)
            if registered.schema_type != "AVRO":
                # A record framed with a Protobuf/JSON schema id: poison for this job, not a reason to stop it.
                self.foreign[schema_id] = f"the registry's schema {schema_id} is {registered.schema_type}, not Avro"
            why = self.foreign.get(schema_id) or self._why_unreadable(registered.schema)
            if why:
                self.incompatible[schema_id] = why
        if pending:
            raise SchemaNotFoundYet(pending, getattr(self.client, "url", "the registry"), self.not_found_grace)
        if new_ids and self.reader_version == "latest":
            # A new writer id may be a new version: make it the reader before decoding it.
            reader_changed = self.load_reader() or reader_changed
        return replace(self.known(), unknown=frozenset(unknown)), reader_changed
