"""The publisher's values are byte for byte confluent-kafka's AvroSerializer's, with the schema id it uses.

Against the real registry: the schema registered by `producer.register`, looked
up by `publish.user_serializer` (latest, or a pinned version), and written by
`producer.serialize.UserAvroWriter`, compared with a stock AvroSerializer
configured the way its documentation says for a pre-registered schema
(`auto.register.schemas=False` with `use.latest.version=True`, or
`use.schema.id`), over many users: every nationality (Persian, Cyrillic,
accented text), null national ids, dates back to year 1 and millisecond
edges, text at the length limit, int32 and coordinate extremes, and fields
protected by tokenizing or encryption.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
from datetime import datetime, timezone

import pytest
from confluent_kafka.schema_registry import (RegisteredSchema, Rule, RuleKind, RuleMode, RuleSet, Schema,
                                             SchemaReference, SchemaRegistryClient)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from core.settings import Settings
from producer import register
from producer.protect import FieldProtector
from producer.publish import user_serializer
from producer.registry import SCHEMAS_DIR, make_client
from producer.serialize import UserAvroWriter, writer_for
from producer.transform import User, transform, user_to_avro
from standin.randomuser import ALL_NATS, generate

INGESTED_AT = datetime(2025, 5, 4, 3, 2, 1, 999000, tzinfo=timezone.utc)
EDGES = [  # (path in the API record, value): what a generated user rarely or never has
    ("dob.date", "0001-01-01T00:00:00.000Z"), ("dob.date", "1899-12-31T23:59:59.999Z"),
    ("registered.date", "1969-12-31T23:59:59.999Z"), ("registered.date", "2199-12-31T23:59:59.001+05:30"),
    ("location.street.number", 2**31 - 1), ("location.street.number", -2**31), ("location.street.number", 0),
    ("location.coordinates.latitude", "-90"), ("location.coordinates.longitude", "180.0"),
    ("location.coordinates.latitude", "0.1"), ("name.first", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🎉 ok"), ("name.last", ""),
    ("location.city", "x" * 1024), ("id.value", None), ("id.name", None), ("location.postcode", 0),
]


def users() -> list[User]:
    raws = [raw for page in (1, 2, 3) for raw in generate("serialize", page, 700, ALL_NATS)]
    for index, (path, value) in enumerate(EDGES * 3):
        raw = copy.deepcopy(raws[index])
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[leaf] = value
        raws.append(raw)
    result = [transform(raw, INGESTED_AT) for raw in raws]
    assert all(isinstance(u, User) for u in result), [u for u in result if not isinstance(u, User)][:2]
    assert {u.nationality for u in result} == set(ALL_NATS)
    assert any(u.national_id_value is None for u in result) and any(u.date_of_birth.year == 1 for u in result)
    return result


def protected(users_: list[User]) -> list[User]:
    """The same users with fields tokenized and encrypted, as PROTECTED_FIELDS would publish them."""
    key = base64.b64decode(base64.b64encode(bytes(range(32))))
    tokenize = FieldProtector(("email", "phone", "national_id_value"), "tokenize", key)
    encrypt = FieldProtector(("cell", "first_name", "street_name"), "encrypt", key)
    return [encrypt.protect_user(tokenize.protect_user(u)) for u in users_[:300]]


USERS = users()
ALL_USERS = USERS + protected(USERS)


def register_schema(settings: Settings, schema_path=None) -> int:
    args = ["--topic", settings.users_topic] + (["--schema", str(schema_path)] if schema_path else [])
    assert register.main(args, settings=settings) == 0
    return make_client(settings).get_latest_version(f"{settings.users_topic}-value").schema_id


def stock_serializer(client: SchemaRegistryClient, conf: dict) -> AvroSerializer:
    """confluent-kafka's serializer as documented for a pre-registered schema (topic subject strategy)."""
    return AvroSerializer(client, schema_str=None, to_dict=user_to_avro, conf={"auto.register.schemas": False, **conf})


def assert_same_bytes(ours, theirs, ctx: SerializationContext, users_: list[User]) -> int:
    """Every value identical; returns the schema id both wrote."""
    assert isinstance(ours, UserAvroWriter)  # the fast writer, not the serializer itself
    ids = set()
    for user in users_:
        expected = theirs(user, ctx)
        assert ours(user, ctx) == expected, user
        ids.add(struct.unpack(">I", expected[1:5])[0])
    assert ids == {ours.schema_id}
    return ours.schema_id


@pytest.mark.integration
def test_values_are_avroserializers_bytes_with_its_schema_id(stack_settings):
    schema_id = register_schema(stack_settings)
    client = make_client(stack_settings)
    subject = f"{stack_settings.users_topic}-value"
    ctx = SerializationContext(stack_settings.users_topic, MessageField.VALUE)
    ours, registered = user_serializer(client, subject, "latest")
    theirs = stock_serializer(make_client(stack_settings), {"use.latest.version": True})
    assert assert_same_bytes(ours, theirs, ctx, ALL_USERS) == registered.schema_id == schema_id
    assert len({ours(u, ctx) for u in ALL_USERS}) == len(set(ALL_USERS))  # one value per distinct user


@pytest.mark.integration
def test_latest_and_pinned_versions_write_the_serializers_ids(stack_settings, tmp_path):
    v1 = register_schema(stack_settings)
    schema = json.loads((SCHEMAS_DIR / "user.avsc").read_text())
    schema["fields"].append({"name": "nickname", "type": ["null", "string"], "default": None})
    (tmp_path / "v2.avsc").write_text(json.dumps(schema))
    v2 = register_schema(stack_settings, tmp_path / "v2.avsc")
    assert v1 != v2
    client = make_client(stack_settings)
    subject = f"{stack_settings.users_topic}-value"
    ctx = SerializationContext(stack_settings.users_topic, MessageField.VALUE)
    sample = ALL_USERS[::7]

    latest, _ = user_serializer(client, subject, "latest")
    assert assert_same_bytes(latest, stock_serializer(client, {"use.latest.version": True}), ctx, sample) == v2
    pinned, registered = user_serializer(client, subject, "1")
    assert registered.version == 1
    assert assert_same_bytes(pinned, stock_serializer(client, {"use.schema.id": v1}), ctx, sample) == v1
    assert latest(sample[0], ctx) != pinned(sample[0], ctx)  # v2 writes the nickname's union branch


def test_a_schema_with_rules_or_references_is_written_by_avroserializer_itself():
    """Rules must run and references resolve; the fast writer does neither, so it is not used for them."""
    client = SchemaRegistryClient({"url": "http://127.0.0.1:9"})  # never called: nothing is serialized here
    text = (SCHEMAS_DIR / "user.avsc").read_text()

    def registered(schema: Schema) -> RegisteredSchema:
        return RegisteredSchema(subject="s-value", version=1, schema_id=7, guid=None, schema=schema)

    assert isinstance(writer_for(client, "s-value", registered(Schema(text, "AVRO")), pinned=False), UserAvroWriter)
    rule = Rule(name="mask", doc=None, kind=RuleKind.TRANSFORM, mode=RuleMode.WRITE, type="ENCRYPT", tags=["PII"],
                params=None, expr=None, on_success=None, on_failure=None, disabled=None)
    for schema in (Schema(text, "AVRO", rule_set=RuleSet(migration_rules=None, domain_rules=[rule])),
                   Schema(text, "AVRO", rule_set=RuleSet(migration_rules=None, domain_rules=None, encoding_rules=[rule])),
                   Schema(text, "AVRO", references=[SchemaReference("io.x.Y", "y-value", 1)])):
        assert isinstance(writer_for(client, "s-value", registered(schema), pinned=False), AvroSerializer)
    migration_only = Schema(text, "AVRO", rule_set=RuleSet(migration_rules=[rule], domain_rules=[]))
    assert isinstance(writer_for(client, "s-value", registered(migration_only), pinned=True), UserAvroWriter)
