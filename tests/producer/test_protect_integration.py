"""Field protection on the real stack: nothing protected is in clear on Kafka, the key recovers it exactly,
and `python -m producer.protect decrypt --id` reads a user's row from Cassandra and prints it in clear.

Needs Kafka, the registry and Cassandra; the data source is the in-process stand-in (30 % malformed, so
dead letters are checked too). Each test has its own topics, subject and keyspace.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import SecretStr

from core import cassandra_schema
from core.settings import REPO_ROOT, Settings
from producer import register
from producer.pipeline import run
from producer.protect import CIPHER_PREFIX, TOKEN_PREFIX, FieldProtector
from producer.registry import make_client
from producer.transform import SOURCE_PATHS, User, avro_to_user, transform, user_to_avro
from tests.producer.stack_fixtures import consume

pytestmark = pytest.mark.integration
FIELDS = ("email", "phone", "cell", "national_id_value")
INGESTED_AT = datetime(2025, 5, 4, tzinfo=timezone.utc)
USERS, PAGE = 60, 30


def clock() -> datetime:
    return INGESTED_AT


def served(datasource, seed: str) -> list[dict]:
    """Exactly what the source serves the run: the test's oracle."""
    return [raw for page in (1, 2)
            for raw in datasource.get(results=PAGE, seed=seed, page=page, malformed=0.3)["results"]]


def at(raw, path: str):
    node = raw
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def clear_values(raws: list[dict]) -> set[str]:
    """Every protected field's value in the source, as text (skipping ones too short to search for)."""
    values = {str(at(raw, SOURCE_PATHS[name])) for raw in raws for name in FIELDS}
    return {v for v in values if len(v) >= 6 and v != "None"}


def protected_run(settings: Settings, datasource, mode: str, key: str, seed: str) -> tuple[Settings, dict]:
    settings = settings.model_copy(update={"datasource_url": f"{datasource.url}?malformed=0.3",
                                           "protected_fields": ",".join(FIELDS), "field_protection_mode": mode,
                                           "field_protection_key": SecretStr(key)})
    return settings, run(settings, users=USERS, batch_size=PAGE, seed=seed, clock=clock)


def read_users(settings: Settings, messages) -> list[User]:
    deserializer = AvroDeserializer(make_client(settings), from_dict=avro_to_user)
    ctx = SerializationContext(settings.users_topic, MessageField.VALUE)
    return [deserializer(m.value(), ctx) for m in messages]


def everything_written(settings: Settings, counts: dict) -> tuple[list, list]:
    users = consume(settings, settings.users_topic, counts["published"])
    letters = consume(settings, settings.dead_letter_topic, counts["dead_lettered"])
    assert (len(users), len(letters)) == (counts["published"], counts["dead_lettered"])
    return users, letters


def as_bytes(message) -> bytes:
    return b"|".join([message.key() or b"", message.value() or b"",
                      *[(value or b"") for _, value in message.headers() or []]])


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def registered(stack_settings) -> Settings:
    assert register.main(["--topic", stack_settings.users_topic], settings=stack_settings) == 0
    return stack_settings


def test_encrypted_fields_are_never_in_clear_on_kafka_and_decrypt_exactly(registered, datasource):
    key = new_key()
    settings, counts = protected_run(registered, datasource, "encrypt", key, "protect-encrypt")
    raws = served(datasource, "protect-encrypt")
    assert counts["fetched"] == USERS and counts["dead_lettered"] >= 5
    users, letters = everything_written(settings, counts)

    secrets = clear_values(raws)
    assert len(secrets) > 100
    for message in users + letters:
        blob = as_bytes(message)
        leaked = [value for value in secrets if value.encode() in blob]
        assert not leaked, f"in clear on {message.topic()}: {leaked[:3]}"

    guard = FieldProtector(FIELDS, "encrypt", base64.b64decode(key))
    expected = {u.id: u for u in (transform(raw, INGESTED_AT) for raw in raws) if isinstance(u, User)}
    decoded = read_users(settings, users)
    assert sorted(u.id for u in decoded) == sorted(expected)
    for user in decoded:
        original = expected[user.id]
        for name in FIELDS:
            value = getattr(user, name)
            if getattr(original, name) is None:
                assert value is None
            else:
                assert value.startswith(CIPHER_PREFIX) and guard.reveal(name, value) == getattr(original, name)
        assert user_to_avro(user) | {n: getattr(original, n) for n in FIELDS} == user_to_avro(original)

    # Dead letters carry ciphertext too, and the key opens it to what the source sent.
    opened = 0
    for letter in letters:
        where = dict(letter.headers())["dead_letter.source"].decode()
        index = (int(where.split("page=")[1].split("&")[0].split("#")[0]) - 1) * PAGE + int(where.split("#record=")[1])
        email = json.loads(letter.value()).get("email")
        if email is not None:
            sent = raws[index]["email"]
            assert guard.reveal("email", email) == (sent if isinstance(sent, str) else json.dumps(sent))
            opened += 1
    assert opened >= 3


def test_tokens_are_deterministic_keyed_and_never_clear(registered, datasource):
    key = new_key()
    settings, counts = protected_run(registered, datasource, "tokenize", key, "protect-tokenize")
    raws = served(datasource, "protect-tokenize")
    users, letters = everything_written(settings, counts)
    secrets = clear_values(raws)
    assert not [v for m in users + letters for v in secrets if v.encode() in as_bytes(m)]

    guard = FieldProtector(FIELDS, "tokenize", base64.b64decode(key))
    other = FieldProtector(FIELDS, "tokenize", os.urandom(32))
    originals = {u.id: u for u in (transform(raw, INGESTED_AT) for raw in raws) if isinstance(u, User)}
    for user in read_users(settings, users):
        email = originals[user.id].email
        assert user.email.startswith(TOKEN_PREFIX)
        assert user.email == guard.tokenize(email) != other.tokenize(email)


def test_decrypt_command_prints_a_users_row_in_clear(registered, datasource, tmp_path):
    key = new_key()
    settings, counts = protected_run(registered, datasource, "encrypt", key, "protect-row")
    users = read_users(settings, consume(settings, settings.users_topic, counts["published"]))
    user = next(u for u in users if u.national_id_value is not None)
    original = next(r for r in (transform(raw, INGESTED_AT) for raw in served(datasource, "protect-row"))
                    if isinstance(r, User) and r.id == user.id)

    keyspace = f"t_protect_{uuid.uuid4().hex[:8]}"
    row_settings = settings.model_copy(update={"cassandra_keyspace": keyspace})
    with cassandra_schema.connect(row_settings) as session:
        cassandra_schema.apply(row_settings, session)
        try:
            row = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in user_to_avro(user).items()}
            session.execute(f"INSERT INTO {keyspace}.users JSON %s", (json.dumps(row),))
            stored = session.execute(f"SELECT * FROM {keyspace}.users WHERE id = %s", (uuid.UUID(user.id),)).one()
            assert stored.email == user.email and original.email not in json.dumps(stored._asdict(), default=str)

            key_file = tmp_path / "field.key"
            key_file.write_text(key + "\n")
            env = {"PATH": os.environ["PATH"], "CASSANDRA_KEYSPACE": keyspace,
                   "CASSANDRA_HOSTS": settings.cassandra_hosts, "CASSANDRA_PORT": str(settings.cassandra_port),
                   "FIELD_PROTECTION_KEY_FILE": str(key_file)}
            done = subprocess.run([sys.executable, "-m", "producer.protect", "decrypt", "--id", user.id],
                                  cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == {"id": user.id, **{name: getattr(original, name) for name in FIELDS}}

            other_key = tmp_path / "other.key"
            other_key.write_text(new_key())
            wrong = subprocess.run([sys.executable, "-m", "producer.protect", "decrypt", "--id", user.id],
                                   cwd=REPO_ROOT, env={**env, "FIELD_PROTECTION_KEY_FILE": str(other_key)},
                                   capture_output=True, text=True, timeout=120)
            assert wrong.returncode == 1 and "cannot decrypt" in wrong.stderr and wrong.stdout == ""
            missing = subprocess.run([sys.executable, "-m", "producer.protect", "decrypt", "--id", str(uuid.uuid4())],
                                     cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert missing.returncode == 1 and f"no user with id" in missing.stderr
        finally:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
