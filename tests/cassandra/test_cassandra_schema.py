"""cassandra/schema.cql and core.cassandra_schema: rendering, type mapping, idempotent apply."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid

import pytest

from core import cassandra_schema as cs
from core.settings import REPO_ROOT, load_settings

AVSC = json.loads((REPO_ROOT / "schemas" / "user.avsc").read_text(encoding="utf-8"))
PROVENANCE = {"schema_id": "int", "kafka_topic": "text", "kafka_partition": "int", "kafka_offset": "bigint", "kafka_timestamp": "timestamp"}


def conf_with(**changes):
    return load_settings().model_copy(update=changes)


# --- offline --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("SimpleStrategy:1", {"class": "SimpleStrategy", "replication_factor": 1}),
    ("SimpleStrategy:3", {"class": "SimpleStrategy", "replication_factor": 3}),
    ("NetworkTopologyStrategy:dc1=3", {"class": "NetworkTopologyStrategy", "dc1": 3}),
    ("NetworkTopologyStrategy:dc1=3,dc2=2", {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 2}),
    ("NetworkTopologyStrategy: eu-west = 2 , us_east=1", {"class": "NetworkTopologyStrategy", "eu-west": 2, "us_east": 1}),
])
def test_replication_is_parsed(text, expected):
    assert cs.parse_replication(text) == expected


@pytest.mark.parametrize("text", ["", "SimpleStrategy", "SimpleStrategy:0", "SimpleStrategy:x",
                                  "NetworkTopologyStrategy:", "NetworkTopologyStrategy:dc1", "NetworkTopologyStrategy:dc1=0",
                                  "EverywhereStrategy:1"])
def test_bad_replication_says_the_expected_format(text):
    with pytest.raises(ValueError, match="replication"):
        cs.parse_replication(text)


def test_network_topology_renders_into_the_keyspace_statement():
    statements = cs.render_statements(conf_with(cassandra_replication="NetworkTopologyStrategy:dc1=3,dc2=2"))
    assert statements[0] == (
        "CREATE KEYSPACE IF NOT EXISTS userstream\n"
        "    WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
    )


def test_the_table_has_one_column_per_avro_field_plus_provenance():
    """Fails when cassandra/schema.cql and schemas/user.avsc drift apart."""
    columns = cs.file_columns(cs.render_statements(conf_with()))
    assert columns == {**cs.columns_for_schema(AVSC), **PROVENANCE}
    assert list(columns)[: len(AVSC["fields"])] == [f["name"] for f in AVSC["fields"]], "same order as the Avro schema"
    assert columns["id"] == "uuid" and columns["date_of_birth"] == "timestamp" and columns["latitude"] == "double"
    assert columns["street_number"] == "int" and columns["national_id_value"] == "text"


def test_names_that_would_need_quoting_are_refused():
    with pytest.raises(ValueError, match="keyspace"):
        cs.render_statements(conf_with(cassandra_keyspace="Users; DROP"))


def test_unmapped_avro_types_are_refused_not_guessed():
    with pytest.raises(ValueError, match="no CQL mapping"):
        cs.cql_type({"type": "array", "items": "string"})
    with pytest.raises(ValueError, match="single CQL type"):
        cs.cql_type(["null", "string", "int"])


def test_dry_run_prints_runnable_cql_without_cassandra():
    out = subprocess.run([sys.executable, "-m", "core.cassandra_schema", "--dry-run"], cwd=REPO_ROOT,
                         env={"CASSANDRA_PORT": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("CREATE KEYSPACE IF NOT EXISTS userstream")
    assert "CREATE TABLE IF NOT EXISTS userstream.users (" in out.stdout and "schema_id int" in out.stdout


def test_unreachable_cassandra_names_host_and_port():
    out = subprocess.run([sys.executable, "-m", "core.cassandra_schema"], cwd=REPO_ROOT,
                         env={"CASSANDRA_HOSTS": "127.0.0.1", "CASSANDRA_PORT": "1", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "cannot reach Cassandra at 127.0.0.1:1" in out.stderr and "Traceback" not in out.stderr


# --- against the real Cassandra --------------------------------------------------------------


@pytest.fixture
def keyspace():
    name = f"t_schema_{uuid.uuid4().hex[:8]}"
    yield name
    with cs.connect(conf_with()) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.mark.integration
def test_apply_twice_is_idempotent(keyspace):
    conf = conf_with(cassandra_keyspace=keyspace)
    with cs.connect(conf) as session:
        cs.apply(conf, session)
        first = cs.live_columns(session, keyspace, "users")
        session.execute(
            f"INSERT INTO {keyspace}.users (id, first_name) VALUES (%s, %s)", (uuid.uuid4(), "Ἀλέξανδρος")
        )
        cs.apply(conf, session)
        assert cs.live_columns(session, keyspace, "users") == first == cs.file_columns(cs.render_statements(conf))
        assert cs.live_replication(session, keyspace) == {"class": "SimpleStrategy", "replication_factor": 1}
        assert session.execute(f"SELECT first_name FROM {keyspace}.users").one().first_name == "Ἀλέξανδρος"


@pytest.mark.integration
def test_apply_adds_columns_an_older_table_lacks_and_refuses_other_replication(keyspace):
    conf = conf_with(cassandra_keyspace=keyspace)
    with cs.connect(conf) as session:
        cs.apply(conf, session)
        session.execute(f"ALTER TABLE {keyspace}.users DROP kafka_timestamp")
        ran = cs.apply(conf, session)
        assert ran[-1] == f"ALTER TABLE {keyspace}.users ADD IF NOT EXISTS kafka_timestamp timestamp"
        assert cs.live_columns(session, keyspace, "users")["kafka_timestamp"] == "timestamp"
        with pytest.raises(cs.CassandraSchemaError, match="nodetool repair"):
            cs.apply(conf_with(cassandra_keyspace=keyspace, cassandra_replication="SimpleStrategy:2"), session)


@pytest.mark.integration
def test_add_columns_for_a_new_schema_version(keyspace):
    conf = conf_with(cassandra_keyspace=keyspace)
    v2 = copy.deepcopy(AVSC)
    v2["fields"].append({"name": "favourite_colour", "type": ["null", "string"], "default": None})
    with cs.connect(conf) as session:
        cs.apply(conf, session)
        assert cs.add_columns_for(conf, session, v2, dry_run=True) == [
            f"ALTER TABLE {keyspace}.users ADD IF NOT EXISTS favourite_colour text"
        ]
        assert "favourite_colour" not in cs.live_columns(session, keyspace, "users")
        cs.add_columns_for(conf, session, v2, dry_run=False)
        assert cs.live_columns(session, keyspace, "users")["favourite_colour"] == "text"
        assert cs.add_columns_for(conf, session, v2, dry_run=False) == []
        bad = copy.deepcopy(AVSC)
        bad["fields"][11]["type"] = "string"  # street_number
        with pytest.raises(cs.CassandraSchemaError, match="street_number is int"):
            cs.add_columns_for(conf, session, bad, dry_run=True)
