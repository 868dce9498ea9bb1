"""Registry helpers without a registry: subject naming, schema files, field-level compatibility diffs."""

from __future__ import annotations

import copy
import json

import pytest

from core.settings import Settings
from producer.registry import (
    SCHEMAS_DIR,
    SchemaFileError,
    compatibility_problems,
    load_schema_file,
    make_client,
    subject_name,
)

USER = json.loads((SCHEMAS_DIR / "user.avsc").read_text())


def evolve(change) -> dict:
    schema = copy.deepcopy(USER)
    change(schema["fields"])
    return schema


def field(fields, name):
    return next(f for f in fields if f["name"] == name)


@pytest.mark.parametrize("strategy,subject", [
    ("topic", "users-value"),
    ("record", "io.userstream.User"),
    ("topic_record", "users-io.userstream.User"),
])
def test_subject_name_strategies(strategy, subject):
    assert subject_name(strategy, "users", "io.userstream.User") == subject


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown subject name strategy"):
        subject_name("topicname", "users", "io.userstream.User")


def test_user_schema_file_loads_with_its_full_name():
    schema_file = load_schema_file(SCHEMAS_DIR / "user.avsc")
    assert schema_file.fullname == "io.userstream.User"
    assert schema_file.parsed == USER


def test_user_schema_keeps_the_field_names_downstream_relies_on():
    names = [f["name"] for f in USER["fields"]]
    assert names[:2] == ["id", "username"] and "national_id_value" in names and "ingested_at" in names
    assert all(f.get("doc") for f in USER["fields"])
    national_id = field(USER["fields"], "national_id_value")
    assert national_id["type"] == ["null", "string"] and national_id["default"] is None


@pytest.mark.parametrize("text,match", [
    ("{not json", "cannot read as JSON"),
    ('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuchtype"}]}', "not a valid Avro schema"),
])
def test_bad_schema_files_are_refused_before_any_registry_call(tmp_path, text, match):
    path = tmp_path / "bad.avsc"
    path.write_text(text)
    with pytest.raises(SchemaFileError, match=match):
        load_schema_file(path)


def test_identical_schema_has_no_problems_at_any_level():
    for level in ("BACKWARD", "FORWARD", "FULL", "FULL_TRANSITIVE", "NONE"):
        assert compatibility_problems(USER, USER, level) == []


def test_new_required_field_breaks_backward_and_is_named():
    new = evolve(lambda fields: fields.append({"name": "loyalty_tier", "type": "string"}))
    problems = compatibility_problems(USER, new, "BACKWARD")
    assert len(problems) == 1 and problems[0].startswith("field 'loyalty_tier' is new and has no default")
    assert compatibility_problems(USER, new, "FORWARD") == []  # old readers just ignore it


def test_new_optional_field_is_compatible_both_ways():
    new = evolve(lambda fields: fields.append({"name": "nickname", "type": ["null", "string"], "default": None}))
    assert compatibility_problems(USER, new, "FULL") == []


def test_type_change_is_named_with_both_types():
    new = evolve(lambda fields: field(fields, "street_number").update(type="string"))
    assert compatibility_problems(USER, new, "BACKWARD") == [
        "field 'street_number' changed type from int to string: the new schema cannot read old data "
        "(not an Avro type promotion)"]


def test_promotions_are_backward_compatible_only():
    new = evolve(lambda fields: field(fields, "street_number").update(type="long"))
    assert compatibility_problems(USER, new, "BACKWARD") == []
    assert [p.split(":")[0] for p in compatibility_problems(USER, new, "FORWARD")] == [
        "field 'street_number' changed type from int to long"]


def test_removed_field_without_default_breaks_forward():
    new = evolve(lambda fields: fields.remove(field(fields, "cell")))
    assert compatibility_problems(USER, new, "BACKWARD") == []
    assert compatibility_problems(USER, new, "FORWARD")[0].startswith("field 'cell' was removed")


def test_making_a_field_nullable_breaks_forward_only():
    new = evolve(lambda fields: field(fields, "email").update(type=["null", "string"], default=None))
    assert compatibility_problems(USER, new, "BACKWARD") == []
    assert compatibility_problems(USER, new, "FORWARD")[0].startswith(
        "field 'email' changed type from string to union[null, string]")


def test_nested_records_are_named_by_path():
    old = {"type": "record", "name": "R", "fields": [
        {"name": "address", "type": {"type": "record", "name": "A", "fields": [{"name": "zip", "type": "int"}]}}]}
    new = copy.deepcopy(old)
    new["fields"][0]["type"]["fields"][0]["type"] = "boolean"
    assert compatibility_problems(old, new, "BACKWARD")[0].startswith("field 'address.zip' changed type")


def test_basic_auth_only_when_configured():
    plain = make_client(Settings(schema_registry_url="http://registry.invalid:8081"))
    assert "basic.auth.user.info" not in plain.config()
    secured = Settings(schema_registry_url="http://registry.invalid:8081",
                       schema_registry_basic_auth_user_info="svc:s3cret")
    assert "s3cret" not in repr(secured)
    assert make_client(secured).config()["basic.auth.user.info"] == "svc:s3cret"


def test_renamed_record_is_named_unless_aliased():
    renamed = {**USER, "name": "Person"}
    assert compatibility_problems(USER, renamed, "BACKWARD") == [
        "the top-level schema changed type from record User to record Person: the new schema cannot read old data "
        "(not an Avro type promotion)"]
    assert compatibility_problems(USER, {**renamed, "aliases": ["User"]}, "BACKWARD") == []


def test_enum_without_a_writer_symbol_is_named_unless_it_has_a_default():
    def with_enum(symbols, **extra):
        return {"type": "record", "name": "R", "fields": [
            {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": symbols, **extra}}]}

    problems = compatibility_problems(with_enum(["GOLD", "SILVER"]), with_enum(["GOLD"]), "BACKWARD")
    assert [p.split(":")[0] for p in problems] == ["field 'tier' changed type from enum Tier to enum Tier"]
    assert compatibility_problems(with_enum(["GOLD", "SILVER"]), with_enum(["GOLD", "OTHER"], default="OTHER"),
                                  "BACKWARD") == []


def test_array_items_and_union_branches_are_checked_by_avro():
    old = {"type": "record", "name": "R", "fields": [{"name": "tags", "type": {"type": "array", "items": "string"}},
                                                     {"name": "score", "type": ["null", "int"], "default": None}]}
    new = copy.deepcopy(old)
    new["fields"][0]["type"]["items"] = "int"
    new["fields"][1]["type"] = ["null", "long"]  # int -> long inside a union is a promotion
    assert [p.split(":")[0] for p in compatibility_problems(old, new, "BACKWARD")] == [
        "field 'tags' changed type from array<string> to array<int>"]
    assert [p.split(":")[0] for p in compatibility_problems(old, new, "FORWARD")] == [
        "field 'tags' changed type from array<string> to array<int>",
        "field 'score' changed type from union[null, int] to union[null, long]"]


def test_a_schema_avro_cannot_parse_is_refused(tmp_path):
    path = tmp_path / "bad-default.avsc"
    path.write_text(json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "n", "type": "int", "default": "not an int"}]}))
    with pytest.raises(SchemaFileError, match="not a valid Avro schema"):
        load_schema_file(path)
