"""The Spark job's plain-Python parts, without a JVM or the stack: schema book, progress, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.settings import load_settings
from spark.kafka_options import kafka_options
from spark.progress import RECENT_BATCHES, merge_offsets, next_progress, progress_path, read_progress, write_progress
from core.subjects import subject_name
from spark.registry import RegisteredSchema, RegistryError, SchemaBook
from spark.session import MissingJarsError, fetched_jars, package_coordinates, session_conf
from tests.spark.users import V1, v2_schema


class FakeRegistry:
    """Ids 1 (v1) and 2 (v2) under subject s; counts requests so caching is visible."""

    def __init__(self):
        self.latest = RegisteredSchema(1, json.dumps(V1), "s", 1)
        self.by_id = {1: json.dumps(V1), 2: json.dumps(v2_schema())}
        self.calls: list[str] = []

    def schema_by_id(self, schema_id):
        self.calls.append(f"id {schema_id}")
        return RegisteredSchema(schema_id, self.by_id[schema_id]) if schema_id in self.by_id else None

    def subject_version(self, subject, version="latest"):
        self.calls.append(f"subject {version}")
        return self.latest


def book(client, version="latest", incompatible_ids=()):
    check = lambda reader, writer: "nope" if any(writer == client.by_id.get(i) for i in incompatible_ids) else None  # noqa: E731
    return SchemaBook(client=client, subject="s", reader_version=version, compatibility=check)


def test_writer_schemas_are_cached_and_unknown_ids_reported():
    client = FakeRegistry()
    schemas = book(client)
    snapshot, changed = schemas.update([1, 7])
    assert changed and snapshot.reader.id == 1
    assert set(snapshot.writers) == {1} and snapshot.unknown == {7}
    client.calls.clear()
    snapshot, changed = schemas.update([1])
    assert not changed and client.calls == []  # nothing new: no request at all
    snapshot, _ = schemas.update([7])
    assert snapshot.unknown == {7} and client.calls == ["id 7", "subject latest"]  # unknown ids are asked again


def test_the_known_snapshot_asks_nothing_and_covers_only_ids_seen():
    """The stream decodes with `known()` first; `covers` says when the registry must be asked after all."""
    client = FakeRegistry()
    schemas = book(client, incompatible_ids=[2])
    assert not schemas.covers([])  # no reader yet
    schemas.update([1, 2])
    client.calls.clear()
    snapshot = schemas.known()
    assert client.calls == [] and set(snapshot.writers) == {1} and snapshot.incompatible == {2: "nope"}
    assert schemas.covers([1, 2]) and schemas.covers([])
    assert not schemas.covers([1, 7])  # an id never looked up (here: one the registry does not have)
    schemas.update([7])
    assert not schemas.covers([7])  # unknown ids are not cached: each batch with one asks again


def test_a_new_writer_id_makes_the_latest_version_the_reader():
    client = FakeRegistry()
    schemas = book(client)
    schemas.update([1])
    client.latest = RegisteredSchema(2, client.by_id[2], "s", 2)
    snapshot, changed = schemas.update([1, 2])
    assert changed and snapshot.reader.id == 2 and set(snapshot.writers) == {1, 2}


def test_a_pinned_reader_version_is_not_moved():
    client = FakeRegistry()
    schemas = book(client, version="1")
    schemas.update([1])
    client.latest = RegisteredSchema(2, client.by_id[2], "s", 2)
    snapshot, changed = schemas.update([2])
    assert not changed and snapshot.reader.id == 1 and "subject latest" not in client.calls


def test_incompatible_writers_are_set_aside_with_the_reason():
    client = FakeRegistry()
    snapshot, _ = book(client, incompatible_ids=[2]).update([1, 2])
    assert snapshot.incompatible == {2: "nope"} and set(snapshot.writers) == {1}


def test_a_non_avro_schema_id_is_set_aside_not_raised():
    client = FakeRegistry()
    client.by_id[3] = 'syntax = "proto3"; message User {}'
    original = client.schema_by_id

    def with_type(schema_id):
        found = original(schema_id)
        return RegisteredSchema(3, found.schema, schema_type="PROTOBUF") if schema_id == 3 else found

    client.schema_by_id = with_type
    schemas = book(client)
    snapshot, _ = schemas.update([1, 3])
    assert snapshot.incompatible == {3: "the registry's schema 3 is PROTOBUF, not Avro"}
    client.latest = RegisteredSchema(2, client.by_id[2], "s", 2)
    schemas.load_reader()  # a new reader must not forget that 3 is not Avro
    assert schemas.incompatible == {3: "the registry's schema 3 is PROTOBUF, not Avro"}


def test_subject_names_follow_confluents_strategies():
    assert subject_name("topic", "users", "io.userstream.User") == "users-value"
    assert subject_name("record", "users", "io.userstream.User") == "io.userstream.User"
    assert subject_name("topic_record", "users", "io.userstream.User") == "users-io.userstream.User"
    with pytest.raises(ValueError):
        subject_name("other", "users", "x")


def test_unreachable_registry_says_where_it_looked():
    from core.schema_registry import make_client
    from spark.registry import RegistryClient

    settings = load_settings().model_copy(update={"schema_registry_url": "http://127.0.0.1:1/x"})
    client = RegistryClient(make_client(settings, max_retries=0))
    with pytest.raises(RegistryError, match=r"registry at http://127.0.0.1:1/x did not answer GET /schemas/ids/1"):
        client.schema_by_id(1)
    with pytest.raises(RegistryError, match=r"did not answer GET /subjects/users-value/versions/latest"):
        client.subject_version("users-value")


def test_progress_accumulates_and_offsets_only_move_forward(tmp_path):
    path = progress_path(str(tmp_path / "ck" / "users"))
    assert path == tmp_path / "ck" / "users.progress.json"
    batch = {"records_in": 10, "rows_written": 8, "dead_lettered": 2, "schema_ids": [1], "duration_seconds": 0.5}
    first = next_progress(None, "q", 0, batch, {"t": {"0": 5, "1": 5}}, 1)
    write_progress(path, first)
    second = next_progress(read_progress(path), "q", 1, batch, {"t": {"1": 9}}, 1)
    assert second["totals"] == {"records_in": 20, "rows_written": 16, "dead_lettered": 4, "batches": 2}
    assert second["end_offsets"] == {"t": {"0": 5, "1": 9}}
    assert second["batchId"] == 1 and second["numInputRows"] == 10 and second["processedRowsPerSecond"] == 20.0
    assert merge_offsets({"t": {"0": 7}}, {"t": {"0": 3}}) == {"t": {"0": 7}}


def test_progress_counts_a_replayed_batch_once_and_restarts_with_a_new_checkpoint():
    batch = {"records_in": 10, "rows_written": 8, "dead_lettered": 2, "schema_ids": [1], "duration_seconds": 0.5}
    first = next_progress(None, "q", 0, batch, {"t": {"0": 10}}, 1)
    second = next_progress(first, "q", 1, batch, {"t": {"0": 20}}, 1)
    # A crash after batch 1's progress but before Spark committed it: batch 1 runs again, maybe bigger.
    bigger = {**batch, "records_in": 15, "rows_written": 12, "dead_lettered": 3}
    replayed = next_progress(second, "q", 1, bigger, {"t": {"0": 25}}, 1)
    assert replayed["totals"] == {"records_in": 25, "rows_written": 20, "dead_lettered": 5, "batches": 2}
    # A deleted checkpoint starts at batch 0 again: totals and offsets start over.
    fresh = next_progress(replayed, "q", 0, batch, {"t": {"0": 10}}, 1)
    assert fresh["totals"] == {"records_in": 10, "rows_written": 8, "dead_lettered": 2, "batches": 1}
    assert fresh["end_offsets"] == {"t": {"0": 10}}
    assert [b["batch_id"] for b in replayed["recent"]] == [0, 1] and replayed["recent"][1]["records_in"] == 15
    assert [b["batch_id"] for b in fresh["recent"]] == [0] and fresh["recent"][0]["records_in"] == 10


def test_progress_keeps_the_last_batches_for_a_reader_that_polls_less_often_than_batches_finish():
    batch = {"records_in": 10, "rows_written": 8, "dead_lettered": 2, "schema_ids": [1], "duration_seconds": 0.5}
    progress = None
    for batch_id in range(RECENT_BATCHES + 5):
        progress = next_progress(progress, "q", batch_id, {**batch, "records_in": batch_id}, {"t": {"0": batch_id}}, 1)
    recent = progress["recent"]
    assert [b["batch_id"] for b in recent] == list(range(5, RECENT_BATCHES + 5))
    assert [b["records_in"] for b in recent] == list(range(5, RECENT_BATCHES + 5))
    assert all(a["finished_at"] <= b["finished_at"] for a, b in zip(recent, recent[1:]))


def test_sasl_settings_become_a_jaas_line():
    settings = load_settings().model_copy(update={
        "kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": "u",
        "kafka_sasl_password": __import__("pydantic").SecretStr('p"w'),
    })
    options = kafka_options(settings)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.jaas.config"] == 'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p\\"w";'
    assert "kafka.sasl.jaas.config" not in kafka_options(load_settings())


def test_missing_jars_say_run_make_setup(tmp_path):
    with pytest.raises(MissingJarsError, match="make setup"):
        fetched_jars(load_settings().model_copy(update={"stack_home": tmp_path}))


def test_session_conf_carries_connector_cassandra_and_avro_limits():
    settings = load_settings().model_copy(update={"spark_use_packages": True, "spark_jars": None})
    conf = session_conf(settings, "app", "local[1]", jvm_running=False)
    assert conf["spark.jars.packages"].split(",") == package_coordinates()
    assert "com.datastax.spark:spark-cassandra-connector_2.12:3.5.1" in package_coordinates()
    assert conf["spark.cassandra.connection.port"] == str(settings.cassandra_port) and conf["spark.master"] == "local[1]"
    assert "-Dorg.apache.avro.limits.string.maxLength=8388608" in conf["spark.driver.extraJavaOptions"]
    # Under spark-submit the JVM exists: its own --jars/--master stand, the executors still get the cap.
    submitted = session_conf(settings, "app", None, jvm_running=True)
    assert not {"spark.jars", "spark.jars.packages", "spark.master", "spark.driver.extraJavaOptions"} & set(submitted)
    assert "-Dorg.apache.avro.limits.bytes.maxLength=8388608" in submitted["spark.executor.extraJavaOptions"]


def test_session_dates_are_proleptic_and_never_rebased():
    """Spark 3.5 throws on pre-1900 timestamps in to_avro and shifts pre-1582 ones on their way to Cassandra otherwise."""
    conf = session_conf(load_settings(), "app", "local[1]", jvm_running=True)  # set either way; no jar lookup
    assert conf["spark.sql.avro.datetimeRebaseModeInWrite"] == conf["spark.sql.avro.datetimeRebaseModeInRead"] == "CORRECTED"
    assert conf["spark.sql.legacy.parquet.datetimeRebaseModeInWrite"] == "CORRECTED"
    assert conf["spark.sql.datetime.java8API.enabled"] == "true"


def test_decode_schemas_lose_only_their_docs():
    """The decode carries schemas without `doc` at any depth; everything Avro resolves by is kept."""
    from spark.decode import without_docs

    schema = {"type": "record", "name": "User", "namespace": "io.userstream", "doc": "who", "aliases": ["Person"],
              "fields": [{"name": "id", "type": "string", "doc": "the key"},
                         {"name": "kind", "doc": "an enum", "default": "A",
                          "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"], "doc": "kinds", "default": "A"}},
                         {"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": None,
                          "aliases": ["labels"]}]}
    stripped = json.loads(without_docs(json.dumps(schema)))
    assert "doc" not in json.dumps(stripped)
    assert stripped["aliases"] == ["Person"] and stripped["namespace"] == "io.userstream"
    assert stripped["fields"][1] == {"name": "kind", "default": "A",
                                     "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"], "default": "A"}}
    assert stripped["fields"][2] == schema["fields"][2]
    real = (Path(__file__).parents[2] / "schemas" / "user.avsc").read_text()
    assert len(without_docs(real)) < len(real) / 2


def test_the_readers_own_id_is_covered_once_the_reader_is_loaded():
    """A stream's first batch, all written with the reader schema, needs no second decode."""
    client = FakeRegistry()
    schemas = book(client)
    schemas.update([])
    assert schemas.covers([1]) and 1 in schemas.known().writers
