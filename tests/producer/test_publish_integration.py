"""The producing half end to end on the real stack: data source -> transform -> Avro on Kafka / dead letters.

Needs Kafka and the Schema Registry (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL); the data source is the
in-process one from stack_fixtures. Every test uses its own topics and subject.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from core import dead_letter
from core.settings import Settings
from producer import register
from producer.pipeline import check_schema_registered, run
from producer.publish import SchemaNotRegisteredError
from producer.redact import LOGIN_SECRETS, without_secrets
from producer.registry import SCHEMAS_DIR, RegistryUnavailable, make_client
from producer.source import DataSourceError
from producer.transform import Rejected, User, avro_to_user, transform
from tests.ports import closed_port
from tests.producer.stack_fixtures import consume

pytestmark = pytest.mark.integration
INGESTED_AT = datetime(2025, 5, 4, 3, 2, 1, 123000, tzinfo=timezone.utc)


def clock() -> datetime:
    return INGESTED_AT


def registered(settings: Settings, *extra: str) -> int:
    """Register the user schema for the test's topic; returns its schema id."""
    assert register.main(["--topic", settings.users_topic, *extra], settings=settings) == 0
    return make_client(settings).get_latest_version(f"{settings.users_topic}-value").schema_id


def expected(datasource, settings: Settings, users: int, batch: int, seed: str, nat: str = "", **params):
    """The transform of exactly what the data source serves for this run: the test's oracle."""
    raws = []
    for page in range(1, -(-users // batch) + 1):
        query = {"results": batch, "seed": seed, "page": page, **params}
        if nat:
            query["nat"] = nat
        raws += datasource.get(**query)["results"]
    raws = raws[:users]
    return raws, [transform(raw, INGESTED_AT) for raw in raws]


def decode_all(settings: Settings, messages) -> list[User]:
    deserializer = AvroDeserializer(make_client(settings), from_dict=avro_to_user)
    ctx = SerializationContext(settings.users_topic, MessageField.VALUE)
    return [deserializer(m.value(), ctx) for m in messages]


def test_publishes_exactly_what_the_source_served(stack_settings, datasource, capsys):
    schema_id = registered(stack_settings)
    counts = run(stack_settings, users=120, batch_size=50, nat="gb,ir,ua,ca,us", seed="publish", clock=clock)
    assert counts == {"fetched": 120, "published": 120, "dead_lettered": 0}

    _, users = expected(datasource, stack_settings, 120, 50, "publish", "gb,ir,ua,ca,us")
    assert all(isinstance(u, User) for u in users)
    messages = consume(stack_settings, stack_settings.users_topic, 120)
    assert len(messages) == 120
    for message in messages:
        value = message.value()
        assert value[0] == 0  # Confluent magic byte
        assert struct.unpack(">I", value[1:5])[0] == schema_id  # the registered schema's id
    decoded = decode_all(stack_settings, messages)
    assert sorted(decoded, key=lambda u: u.id) == sorted(users, key=lambda u: u.id)
    # Keyed by user id, so a user always lands in the same partition.
    assert all(m.key().decode() == u.id for m, u in zip(messages, decoded))
    assert {u.nationality for u in decoded} == {"GB", "IR", "UA", "CA", "US"}

    # The topic was created with the configured partition count.
    topic = AdminClient(stack_settings.kafka_config()).list_topics(stack_settings.users_topic, timeout=10)
    assert len(topic.topics[stack_settings.users_topic].partitions) == stack_settings.users_topic_partitions


def test_malformed_records_reach_the_dead_letter_topic_with_their_reason(stack_settings, datasource):
    registered(stack_settings)
    settings = stack_settings.model_copy(update={"datasource_url": f"{datasource.url}?malformed=0.3"})
    counts = run(settings, users=80, batch_size=40, seed="dirty", clock=clock)

    raws, results = expected(datasource, settings, 80, 40, "dirty", malformed=0.3)
    rejected = {i: r for i, r in enumerate(results) if isinstance(r, Rejected)}
    assert 10 <= len(rejected) <= 40
    assert counts == {"fetched": 80, "published": 80 - len(rejected), "dead_lettered": len(rejected)}

    letters = consume(settings, settings.dead_letter_topic, len(rejected))
    assert len(letters) == len(rejected)
    seen = {}
    for letter in letters:
        headers = dead_letter.read_headers(letter.headers())
        assert headers[dead_letter.STAGE] == dead_letter.TRANSFORM
        page = int(headers[dead_letter.SOURCE].split("page=")[1].split("#")[0])
        index = (page - 1) * 40 + int(headers[dead_letter.SOURCE].split("#record=")[1])
        assert headers[dead_letter.SOURCE].startswith(settings.datasource_url)
        assert json.loads(letter.value()) == without_secrets(raws[index])  # the raw JSON minus the login secrets
        assert not set(LOGIN_SECRETS) & set((json.loads(letter.value()).get("login") or {}))
        seen[index] = headers[dead_letter.REASON]
    assert seen == {i: r.reason for i, r in rejected.items()}

    published = decode_all(settings, consume(settings, settings.users_topic, 80 - len(rejected)))
    assert sorted(u.id for u in published) == sorted(r.id for r in results if isinstance(r, User))


def test_pinned_schema_version_is_used(stack_settings, tmp_path):
    v1 = registered(stack_settings)
    schema = json.loads((SCHEMAS_DIR / "user.avsc").read_text())
    schema["fields"].append({"name": "nickname", "type": ["null", "string"], "default": None})
    (tmp_path / "v2.avsc").write_text(json.dumps(schema))
    v2 = registered(stack_settings, "--schema", str(tmp_path / "v2.avsc"))
    assert v1 != v2

    pinned = stack_settings.model_copy(update={"user_schema_version": "1"})
    assert check_schema_registered(pinned) == {
        "subject": f"{stack_settings.users_topic}-value", "schema_id": v1, "version": 1}
    assert run(pinned, users=5, batch_size=5, seed="pinned", clock=clock)["published"] == 5
    ids = {struct.unpack(">I", m.value()[1:5])[0] for m in consume(pinned, pinned.users_topic, 5)}
    assert ids == {v1}


def test_latest_version_is_used_by_default(stack_settings, tmp_path):
    registered(stack_settings)
    schema = json.loads((SCHEMAS_DIR / "user.avsc").read_text())
    schema["fields"].append({"name": "nickname", "type": ["null", "string"], "default": None})
    (tmp_path / "v2.avsc").write_text(json.dumps(schema))
    v2 = registered(stack_settings, "--schema", str(tmp_path / "v2.avsc"))
    run(stack_settings, users=4, batch_size=4, seed="latest", clock=clock)
    messages = consume(stack_settings, stack_settings.users_topic, 4)
    assert {struct.unpack(">I", m.value()[1:5])[0] for m in messages} == {v2}
    # Written with v2 (nickname defaulted to null), still read back as the same users.
    assert all(u.ingested_at == INGESTED_AT for u in decode_all(stack_settings, messages))


def test_subject_without_schema_is_a_clear_error(stack_settings):
    with pytest.raises(SchemaNotRegisteredError, match=r"run `make register`"):
        run(stack_settings, users=5, batch_size=5, seed="unregistered")
    with pytest.raises(SchemaNotRegisteredError, match=f"'{stack_settings.users_topic}-value'"):
        check_schema_registered(stack_settings)


def test_registry_down_is_a_clear_error(stack_settings):
    port = closed_port()
    down = stack_settings.model_copy(update={"schema_registry_url": f"http://127.0.0.1:{port}"})
    with pytest.raises(RegistryUnavailable, match=rf"cannot reach the Schema Registry at http://127.0.0.1:{port}"):
        run(down, users=5, batch_size=5, seed="registry-down")


def test_data_source_down_is_a_clear_error_and_nothing_is_published(stack_settings):
    registered(stack_settings)
    down = stack_settings.model_copy(update={"datasource_url": f"http://127.0.0.1:{closed_port()}/api/",
                                             "datasource_retries": 1})
    with pytest.raises(DataSourceError, match=r"cannot reach the data source .*make up"):
        run(down, users=5, batch_size=5, seed="source-down")


def test_source_failure_midway_delivers_earlier_pages_then_raises(stack_settings, datasource):
    """Page 1 succeeds, page 2 keeps failing: page 1 is delivered (a replay upserts it), and the run fails."""
    registered(stack_settings)
    flaky = stack_settings.model_copy(update={"datasource_url": f"{datasource.url}?fail=503&fail_page=2",
                                              "datasource_retries": 1})
    with pytest.raises(DataSourceError, match=r"kept failing after retries .*page=2"):
        run(flaky, users=10, batch_size=5, seed="midway", clock=clock)
    assert len(consume(stack_settings, stack_settings.users_topic, 5)) == 5
