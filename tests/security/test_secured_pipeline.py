"""The whole pipeline on the secured stack, through settings only; refusals that name the setting to fix.

Needs: the jars (`make setup`); starts its own secured Kafka, registry,
Cassandra and data source (tests/security/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
import requests

from core.cassandra_schema import connect
from producer.pipeline import run as run_producer
from producer.source import fetch_batches, make_session
from producer.transform import USER_FIELDS, User, transform

pytestmark = pytest.mark.integration

USERS = 30
SEED = "secured-stack"


def as_utc(value):
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def served_users(settings) -> dict[str, User]:
    """What the data source serves for SEED, through the producer's own mapping."""
    users = {}
    for batch in fetch_batches(make_session(), settings.datasource_url, USERS, 10, SEED):
        for raw in batch.records:
            user = transform(raw, ingested_at=datetime.now(timezone.utc))
            if isinstance(user, User):
                users[user.id] = user
    return users


@pytest.fixture(scope="module")
def pipeline_run(secured_stack):
    """cassandra-schema, register, the producer, then the Spark job until the topic is drained."""
    schema = secured_stack.run("core.cassandra_schema")
    assert schema.returncode == 0, schema.stderr
    register = secured_stack.run("producer.register")
    assert register.returncode == 0, register.stdout + register.stderr
    settings = secured_stack.client_settings()
    started = datetime.now(timezone.utc)
    counts = run_producer(settings, users=USERS, batch_size=10, seed=SEED)
    job = secured_stack.run("spark.stream_job", "--available-now", timeout=900,
                            log=secured_stack.layout.logs / "stream-available-now.log")
    return counts, job, started


def test_every_client_setting_comes_from_the_private_env_file(secured_stack):
    settings = secured_stack.client_settings()
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password.get_secret_value() == secured_stack.passwords()["kafka_client"]
    assert settings.cassandra_ssl and settings.cassandra_password.get_secret_value() == secured_stack.passwords()["cassandra"]
    assert settings.schema_registry_url.startswith("https://")
    assert not {key for key in secured_stack.env if "PASSWORD" in key or "USER_INFO" in key}, "nothing secret in the environment"


def test_the_pipeline_runs_end_to_end_and_rows_match_field_by_field(secured_stack, pipeline_run):
    counts, job, started = pipeline_run
    assert counts["published"] + counts["dead_lettered"] == counts["fetched"] == USERS, counts
    assert job.returncode == 0, job.stdout[-4000:]
    settings = secured_stack.client_settings()
    expected = served_users(settings)
    assert len(expected) == counts["published"]
    with connect(settings) as session:
        statement = session.prepare(f"SELECT * FROM {settings.cassandra_keyspace}.{settings.cassandra_table} WHERE id = ?")
        rows = {user_id: session.execute(statement, (uuid.UUID(user_id),)).one() for user_id in expected}
    missing = [user_id for user_id, row in rows.items() if row is None]
    assert not missing, f"{len(missing)} users never reached Cassandra, e.g. {missing[:3]}"
    for user_id, user in expected.items():
        row = rows[user_id]
        for name in USER_FIELDS:
            if name == "ingested_at":
                assert as_utc(row.ingested_at) >= started.replace(microsecond=0)
                continue
            actual = str(row.id) if name == "id" else as_utc(getattr(row, name))
            assert actual == getattr(user, name), f"user {user_id} field {name}: {actual!r} != {getattr(user, name)!r}"


def test_status_sees_every_secured_service_and_the_rows(secured_stack, pipeline_run):
    result = secured_stack.run("ops.status", "--json", timeout=180)
    report = json.loads(result.stdout)
    services = {service["name"]: service for service in report["services"]}
    for name in ("kafka", "registry", "cassandra", "datasource"):
        assert services[name]["up"], services[name]
    assert report["cassandra"]["rows"] == pipeline_run[0]["published"], report["cassandra"]


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"KAFKA_SASL_PASSWORD": "not-the-password"}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SSL_CA_LOCATION": "/etc/ssl/certs/ca-certificates.crt"}, "KAFKA_SSL_CA_LOCATION"),
    ],
    ids=["wrong-password", "plaintext-client", "untrusted-ca"],
)
def test_kafka_refuses_a_wrong_client_and_the_producer_names_the_setting(secured_stack, pipeline_run, override, setting):
    result = secured_stack.run("producer.pipeline", "--users", "5", "--seed", "refused", timeout=180, **override)
    assert result.returncode != 0
    assert setting in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"CASSANDRA_PASSWORD": "not-the-password"}, "CASSANDRA_PASSWORD"),
        ({"CASSANDRA_SSL": "false"}, "CASSANDRA_SSL"),
        ({"CASSANDRA_USERNAME": "cassandra", "CASSANDRA_PASSWORD": "cassandra"}, "CASSANDRA_PASSWORD"),
    ],
    ids=["wrong-password", "plaintext-client", "default-superuser-locked"],
)
def test_cassandra_refuses_a_wrong_client_and_the_error_names_the_setting(secured_stack, override, setting):
    result = secured_stack.run("core.cassandra_schema", timeout=120, **override)
    assert result.returncode == 1
    assert setting in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "userstream:not-the-password"}, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"),
        ({"SCHEMA_REGISTRY_URL": "http://localhost:31081/apis/ccompat/v7"}, "SCHEMA_REGISTRY_URL"),
        ({"SCHEMA_REGISTRY_CA_LOCATION": "/etc/ssl/certs/ca-certificates.crt"}, "SCHEMA_REGISTRY_CA_LOCATION"),
    ],
    ids=["wrong-password", "plaintext-client", "untrusted-ca"],
)
def test_the_registry_refuses_a_wrong_client_and_register_names_the_setting(secured_stack, override, setting):
    result = secured_stack.run("producer.register", "--dry-run", timeout=120, **override)
    assert result.returncode == 1
    assert setting in result.stderr, result.stderr


def test_the_registry_wants_tls_and_a_login(secured_stack):
    settings = secured_stack.client_settings()
    url = settings.schema_registry_url.rstrip("/") + "/subjects"
    ca = settings.schema_registry_ca_location
    user, password = settings.schema_registry_basic_auth()
    assert requests.get(url, verify=ca, auth=(user, password), timeout=10).status_code == 200
    assert requests.get(url, verify=ca, timeout=10).status_code == 401
    assert requests.get(url, verify=ca, auth=(user, "not-the-password"), timeout=10).status_code == 401
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("https://", "http://"), timeout=10)


def test_no_generated_secret_in_any_log_under_the_stack_home(secured_stack, pipeline_run):
    secrets = secured_stack.passwords()
    scanned = [path for path in secured_stack.home.rglob("*.log") if path.is_file()]
    scanned += [path for path in (secured_stack.home / "logs").rglob("*") if path.is_file()]
    assert any(path.name == "stream-available-now.log" for path in scanned), "the job's own log is scanned"
    for path in set(scanned):
        text = path.read_text(errors="replace")
        leaked = [name for name, value in secrets.items() if value in text]
        assert not leaked, f"{path} holds the {leaked} password(s)"
