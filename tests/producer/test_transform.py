"""Transform: real-shaped API records -> User; bad records -> a reason naming the field; never raises."""

from __future__ import annotations

import copy
import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from core.settings import Settings
from producer.bounds import Bounds
from producer.registry import SCHEMAS_DIR
from producer.transform import SOURCE_PATHS, USER_FIELDS, Rejected, User, avro_to_user, transform, user_to_avro
from standin.randomuser import ALL_NATS, generate

SAMPLES = json.loads((Path(__file__).parent / "data" / "randomuser_v1_4.json").read_text(encoding="utf-8"))["results"]
US, GB, CA, IR, UA = SAMPLES
NOW = datetime(2025, 6, 1, 12, 30, 45, 123456, tzinfo=timezone.utc)
SCHEMA_JSON = json.loads((SCHEMAS_DIR / "user.avsc").read_text())
PARSED_SCHEMA = fastavro.parse_schema(SCHEMA_JSON)


def ok(raw, now=NOW) -> User:
    result = transform(raw, now)
    assert isinstance(result, User), result
    return result


def avro_roundtrip(user: User) -> User:
    """Write with the real schema and read back: what Kafka consumers will see."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PARSED_SCHEMA, user_to_avro(user))
    buffer.seek(0)
    return avro_to_user(fastavro.schemaless_reader(buffer, PARSED_SCHEMA, PARSED_SCHEMA))


def mutated(record: dict, path: str, value=..., delete: bool = False) -> dict:
    raw = copy.deepcopy(record)
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


def test_us_record_maps_every_field():
    assert ok(US) == User(
        id="7a0eed16-9430-4d68-901f-c0d4c1c3bf00",
        username="yellowpeacock117",
        gender="female",
        title="Miss",
        first_name="Jennie",
        last_name="Nichols",
        email="jennie.nichols@example.com",
        phone="(272) 790-0888",
        cell="(489) 330-2385",
        date_of_birth=datetime(1992, 3, 8, 15, 13, 16, 688000, tzinfo=timezone.utc),
        registered_at=datetime(2007, 7, 9, 5, 51, 59, 390000, tzinfo=timezone.utc),
        street_number=8929,
        street_name="Valwood Pkwy",
        city="Billings",
        state="Michigan",
        country="United States",
        postcode="63104",
        latitude=-69.8246,
        longitude=134.8719,
        timezone_offset="+9:30",
        timezone_description="Adelaide, Darwin",
        national_id_name="SSN",
        national_id_value="405-88-3636",
        picture_large="https://randomuser.me/api/portraits/women/75.jpg",
        picture_medium="https://randomuser.me/api/portraits/med/women/75.jpg",
        picture_thumbnail="https://randomuser.me/api/portraits/thumb/women/75.jpg",
        nationality="US",
        ingested_at=datetime(2025, 6, 1, 12, 30, 45, 123000, tzinfo=timezone.utc),  # millis, as Avro keeps
    )


@pytest.mark.parametrize("raw,postcode", [(GB, "LU7 9QE"), (CA, "K1A 0B1"), (US, "63104"), (UA, "1001")])
def test_postcode_is_text_whether_sent_as_string_or_int(raw, postcode):
    assert ok(raw).postcode == postcode


def test_null_national_id_is_kept_as_none():
    user = ok(IR)
    assert user.national_id_value is None and user.national_id_name == ""
    assert avro_roundtrip(user).national_id_value is None


def test_persian_and_cyrillic_names_survive_avro():
    iranian, ukrainian = avro_roundtrip(ok(IR)), avro_roundtrip(ok(UA))
    assert (iranian.first_name, iranian.last_name, iranian.city) == ("محمدطاها", "کریمی", "شیراز")
    assert (ukrainian.first_name, ukrainian.last_name, ukrainian.street_name) == ("Соломія", "Шевченко", "Хрещатик")
    assert ok(CA).first_name == "Maëlle"


def test_coordinates_become_floats_and_dates_aware_utc():
    user = ok(GB)
    assert (user.latitude, user.longitude) == (51.4545, -2.5879)
    assert user.date_of_birth == datetime(1968, 11, 2, 22, 5, 41, 120000, tzinfo=timezone.utc)
    assert user.date_of_birth.utcoffset() == timedelta(0)


def test_offset_dates_are_converted_to_utc():
    user = ok(mutated(US, "dob.date", "1992-03-08T17:13:16.688+02:00"))
    assert user.date_of_birth == datetime(1992, 3, 8, 15, 13, 16, 688000, tzinfo=timezone.utc)


def test_ingested_at_is_passed_in_and_must_be_aware():
    later = NOW + timedelta(hours=1)
    assert ok(US, later).ingested_at == later.replace(microsecond=123000)
    with pytest.raises(ValueError, match="timezone-aware"):
        transform(US, datetime(2025, 1, 1))


def test_no_login_secrets_are_carried():
    user = ok(US)
    record = user_to_avro(user)
    assert set(record) == {f["name"] for f in SCHEMA_JSON["fields"]} == set(USER_FIELDS)
    secrets = [US["login"][key] for key in ("password", "salt", "md5", "sha1", "sha256")]
    rendered = repr(record)
    assert not any(secret in rendered for secret in secrets)


@pytest.mark.parametrize("raw", SAMPLES, ids=lambda r: r["nat"])
def test_avro_roundtrip_is_lossless(raw):
    user = ok(raw)
    assert avro_roundtrip(user) == user


def test_every_generated_nationality_transforms():
    records = generate("transform", 1, 1000, ALL_NATS)
    users = [transform(raw, NOW) for raw in records]
    rejected = [u for u in users if isinstance(u, Rejected)]
    assert not rejected, rejected[:3]
    assert {u.nationality for u in users} == set(ALL_NATS)


@pytest.mark.parametrize("raw,reason", [
    (mutated(US, "login", delete=True), "login: missing"),
    (mutated(US, "login.uuid", delete=True), "login.uuid: missing"),
    (mutated(US, "email", delete=True), "email: missing"),
    (mutated(US, "location.coordinates", delete=True), "location.coordinates: missing"),
    (mutated(US, "location.coordinates.latitude", "not-a-number"), "location.coordinates.latitude: not a number"),
    (mutated(US, "location.coordinates.latitude", "NaN"), "location.coordinates.latitude: 'NaN' is outside"),
    (mutated(US, "location.coordinates.longitude", "512.5"), "location.coordinates.longitude: '512.5' is outside"),
    (mutated(US, "location.coordinates.longitude", None), "location.coordinates.longitude: expected a number"),
    (mutated(US, "location.street.number", "12b"), "location.street.number: expected an integer"),
    (mutated(US, "location.street.number", True), "location.street.number: expected an integer"),
    (mutated(US, "location.street.number", 2**31), "location.street.number: 2147483648 does not fit"),
    (mutated(US, "location.postcode", None), "location.postcode: expected a string or an integer"),
    (mutated(US, "location.postcode", ""), "location.postcode: empty"),
    (mutated(US, "dob.date", "20th of July"), "dob.date: not an ISO 8601 date-time"),
    (mutated(US, "dob.date", "1992-03-08T15:13:16"), "dob.date: no time zone"),
    (mutated(US, "registered", "2010-01-01"), "registered: expected an object, got str"),
    (mutated(US, "name", None), "name: expected an object, got NoneType"),
    (mutated(US, "name.first", ["Jennie"]), "name.first: expected a string, got list"),
    (mutated(US, "email", 42), "email: expected a string, got int"),
    (mutated(US, "login.uuid", "not-a-uuid"), "login.uuid: not a UUID"),
    (mutated(US, "id.value", {"v": 1}), "id.value: expected a string or an integer"),
    (mutated(US, "name.last", "Nich\ud800ols"), "name.last: not valid UTF-8"),
    ([US], "record: expected an object, got list"),
    (None, "record: expected an object, got NoneType"),
])
def test_bad_records_are_rejected_with_a_reason_naming_the_field(raw, reason):
    result = transform(raw, NOW)
    assert isinstance(result, Rejected), result
    assert result.reason.startswith(reason), result.reason


def test_malformed_datasource_records_are_all_rejected():
    clean = generate("dirty", 1, 300, ALL_NATS)
    dirty = generate("dirty", 1, 300, ALL_NATS, malformed=1.0)
    results = [transform(raw, NOW) for raw in dirty]
    assert all(isinstance(r, Rejected) for r in results), [r for r in results if isinstance(r, User)][:1]
    assert len({r.reason.split(":")[0] for r in results}) >= 8  # many kinds of damage, each named
    assert all(isinstance(transform(raw, NOW), User) for raw in clean)


# --- Property: no JSON input makes transform raise -------------------------

# JSON strings can carry lone surrogates ("\ud800" escapes decode to them), which Avro cannot encode.
json_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12) | st.sampled_from(
    ["", " ", "1e999", "NaN", "-0", "45.5", "2024-02-30T00:00:00Z", "1992-03-08T15:13:16.688Z",
     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "7a0eed16-9430-4d68-901f-c0d4c1c3bf00"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | json_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _paths(node, prefix=()):
    """Every key path inside a nested dict/list record."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))


ALL_PATHS = sorted(_paths(US))


def _at(node, path):
    for key in path:
        node = node[key]
    return node


LEAF_PATHS = [p for p in ALL_PATHS if not isinstance(_at(US, p), dict)]
# Values that are nearly right: the edge cases a leaf's parser must handle.
tricky_values = st.sampled_from(
    ["NaN", "inf", "-inf", "1e999", "90.00001", "-180.0001", "0", "", " ", "\ud800", "abc\udfff",
     "2024-02-30T00:00:00Z", "1992-03-08T15:13:16.688", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
     "2147483648", "not-a-uuid", "7A0EED16-9430-4D68-901F-C0D4C1C3BF00"]
) | st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans() | st.none() | json_text


def _check_never_raises(raw) -> None:
    result = transform(raw, NOW)
    assert isinstance(result, (User, Rejected))
    if isinstance(result, Rejected):
        assert result.reason and result.reason.encode("utf-8")  # a header-safe, non-empty reason
    else:
        fastavro.validation.validate(user_to_avro(result), PARSED_SCHEMA, raise_errors=True)
        assert avro_roundtrip(result) == result
        assert math.isfinite(result.latitude) and math.isfinite(result.longitude)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(raw):
    _check_never_raises(raw)


@hsettings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LEAF_PATHS), tricky_values)
                | st.tuples(st.sampled_from(ALL_PATHS), json_values | st.just(...)), min_size=1, max_size=3))
def test_damaged_real_records_never_raise(changes):
    """Arbitrary JSON alone rarely gets past the first field; damage a real record instead, deep inside."""
    raw = copy.deepcopy(US)
    for path, value in changes:
        node = raw
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if isinstance(node, dict):
                if value is ...:
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = value
    _check_never_raises(raw)


# --- Bounds: over-long text and out-of-range dates are dead-lettered with the limit -----------

def test_text_at_the_limit_passes_and_one_more_character_is_rejected():
    assert ok(mutated(US, "name.first", "J" * 1024)).first_name == "J" * 1024
    result = transform(mutated(US, "name.first", "J" * 1025), NOW)
    assert result == Rejected("name.first: 1025 characters, over the limit of 1024 (TRANSFORM_MAX_STRING_LENGTH)")


@pytest.mark.parametrize("path,value", [
    ("email", "a" * 60 + "@example.com"), ("location.postcode", 10**60), ("id.value", "9" * 61),
    ("picture.large", "https://randomuser.me/" + "x" * 50), ("location.timezone.description", "Z" * 61),
])
def test_every_text_field_is_bounded_by_the_configured_length(path, value):
    result = transform(mutated(US, path, value), NOW, Bounds(max_string_length=60))
    assert isinstance(result, Rejected) and result.reason.startswith(f"{path}: ")
    assert "over the limit of 60 (TRANSFORM_MAX_STRING_LENGTH)" in result.reason


@pytest.mark.parametrize("path,value,reason", [
    ("dob.date", "2300-01-01T00:00:00.000Z",
     "dob.date: 2300-01-01T00:00:00+00:00 is after 2200-01-01 (TRANSFORM_MAX_DATE)"),
    ("registered.date", "1899-12-31T23:59:59.000Z",
     "registered.date: 1899-12-31T23:59:59+00:00 is before 1900-01-01 (TRANSFORM_MIN_DATE)"),
    ("dob.date", "1900-01-01T00:30:00+01:00",  # 1899-12-31T23:30Z once in UTC
     "dob.date: 1899-12-31T23:30:00+00:00 is before 1900-01-01 (TRANSFORM_MIN_DATE)"),
])
def test_dates_outside_the_configured_range_are_rejected(path, value, reason):
    bounds = Bounds.from_settings(Settings(transform_min_date="1900-01-01"))
    assert transform(mutated(US, path, value), NOW, bounds) == Rejected(reason)
    assert isinstance(transform(mutated(US, path, "1900-01-01T00:00:00Z"), NOW, bounds), User)


@pytest.mark.parametrize("update,match", [
    ({"transform_max_date": "2200-13-01"}, r"TRANSFORM_MAX_DATE='2200-13-01' is not a date in YYYY-MM-DD form"),
    ({"transform_min_date": "yesterday"}, r"TRANSFORM_MIN_DATE='yesterday' is not a date"),
    ({"transform_min_date": "2300-01-01"}, r"TRANSFORM_MIN_DATE \(2300-01-01\) must be before TRANSFORM_MAX_DATE"),
])
def test_bad_date_bounds_are_a_clear_error_naming_the_setting(update, match):
    with pytest.raises(ValueError, match=match):
        Bounds.from_settings(Settings(**update))


def test_every_user_field_has_its_source_path():
    assert set(SOURCE_PATHS) | {"ingested_at"} == set(USER_FIELDS)
    for name, path in SOURCE_PATHS.items():
        if name in ("national_id_name", "national_id_value"):
            continue  # null is legal there
        result = transform(mutated(US, path, delete=True), NOW)
        assert result == Rejected(f"{path}: missing"), name
