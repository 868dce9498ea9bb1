"""The transform's fast path gives the careful path's answers: the same User, or it steps aside.

`producer.transform._fast_build` is straight-line code for the producer's hot
loop; the careful path (`_build`) is the mapping's authority and names every
reason. These tests hold the fast path to: never accept what the careful path
rejects, never build a different User (same values, same types), and take
every clean record the data source generates (else the speed is lost silently).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from producer.bounds import DEFAULT_BOUNDS, Bounds
from producer.transform import USER_FIELDS, Rejected, User, _build, _fast_build, _Invalid, _utc_millis, transform
from standin.randomuser import ALL_NATS, generate
from tests.producer.test_transform import ALL_PATHS, LEAF_PATHS, SAMPLES, US, json_values, tricky_values

NOW = datetime(2025, 6, 1, 12, 30, 45, 123000, tzinfo=timezone.utc)
# Under 100 characters a field, over 100 all together: the fast path must still check them one by one.
ROOMY = Bounds(max_string_length=100)
BOUNDS = [DEFAULT_BOUNDS, ROOMY, Bounds(max_string_length=12),
          Bounds(min_date=datetime(1950, 1, 1, tzinfo=timezone.utc), max_date=datetime(2010, 1, 1, tzinfo=timezone.utc))]


def careful(raw, bounds: Bounds):
    try:
        return _build(raw, NOW, bounds)
    except _Invalid as invalid:
        return Rejected(str(invalid))
    except RecursionError:
        return Rejected("record: nested too deeply to inspect")


def assert_agree(raw, bounds: Bounds) -> User | None:
    """The fast path's User equals the careful one field by field, types included; or it gave up."""
    fast = _fast_build(raw, NOW, bounds)
    expected = careful(raw, bounds)
    if fast is not None:
        assert isinstance(expected, User), f"fast path accepted a record the careful path rejects: {expected}"
        assert fast == expected
        assert {f: type(getattr(fast, f)) for f in USER_FIELDS} == {f: type(getattr(expected, f)) for f in USER_FIELDS}
        assert vars(fast) == {f: getattr(expected, f) for f in USER_FIELDS}  # what the Avro writer reads
    return fast


@pytest.mark.parametrize("bounds", BOUNDS, ids=["default", "roomy", "short-text", "narrow-dates"])
def test_generated_records_agree_and_clean_ones_take_the_fast_path(bounds):
    records = [raw for page in (1, 2) for raw in generate("fast-path", page, 1500, ALL_NATS)] + SAMPLES
    for raw in records:
        fast = assert_agree(raw, bounds)
        if bounds in (DEFAULT_BOUNDS, ROOMY):
            assert fast is not None, f"a clean {raw['nat']} record left the fast path: {careful(raw, bounds)}"


def test_malformed_records_agree():
    for raw in generate("fast-dirty", 1, 1000, ALL_NATS, malformed=0.5):
        assert_agree(raw, DEFAULT_BOUNDS)


@pytest.mark.parametrize("path,value", [
    ("login.uuid", "7A0EED16-9430-4D68-901F-C0D4C1C3BF00"),  # valid, but the careful path normalizes it
    ("login.uuid", "{7a0eed16-9430-4d68-901f-c0d4c1c3bf00}"),
    ("dob.date", "1992-03-08T15:13:16.688999Z"),  # microseconds are cut to milliseconds
    ("dob.date", "1992-03-08T17:13:16.688+02:00"),
    ("location.coordinates.latitude", 45), ("location.coordinates.latitude", 45.5),
    ("location.coordinates.latitude", " 45.5 "), ("location.coordinates.longitude", "1_0"),
    ("location.postcode", 2**70), ("location.postcode", " "), ("id.value", 12), ("id.value", True),
    ("id.value", ""), ("id.name", None), ("location.street.number", 2**31 - 1), ("location.street.number", -2**31),
    ("location.street.number", 2.0), ("nat", " "), ("email", "é" * 1024), ("email", "é" * 1025),
    ("name.first", "a\ud800"), ("dob.date", "0001-01-01T00:00:00+01:00"),
])
def test_edge_values_agree(path, value):
    raw = copy.deepcopy(US)
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[leaf] = value
    assert_agree(raw, DEFAULT_BOUNDS)


def test_subclassed_containers_and_strings_go_the_careful_way():
    class Text(str):
        pass

    raw = copy.deepcopy(US)
    raw["email"] = Text(raw["email"])
    assert _fast_build(raw, NOW, DEFAULT_BOUNDS) is None and transform(raw, NOW).email == raw["email"]
    ordered = dict(US, location=type("Location", (dict,), {})(US["location"]))
    assert _fast_build(ordered, NOW, DEFAULT_BOUNDS) is None and isinstance(transform(ordered, NOW), User)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BOUNDS),
       st.lists(st.tuples(st.sampled_from(LEAF_PATHS), tricky_values)
                | st.tuples(st.sampled_from(ALL_PATHS), json_values | st.just(...)), min_size=1, max_size=3))
def test_damaged_records_agree(bounds, changes):
    raw = copy.deepcopy(US)
    for path, value in changes:
        node = raw
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if value is ...:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    assert_agree(raw, bounds)


def test_a_fast_user_behaves_like_any_user():
    fast = _fast_build(US, NOW, DEFAULT_BOUNDS)
    built = careful(US, DEFAULT_BOUNDS)
    assert fast == built and hash(fast) == hash(built) and repr(fast) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.email = "x"
    assert dataclasses.replace(fast, email="x") == dataclasses.replace(built, email="x")
    assert pickle.loads(pickle.dumps(fast)) == built


def test_ingested_at_is_cached_per_instant_not_per_object():
    assert _utc_millis(NOW) is _utc_millis(NOW)
    other_zone = NOW.astimezone(timezone(timedelta(hours=2)))
    assert transform(US, other_zone).ingested_at == NOW and transform(US, other_zone).ingested_at.tzinfo == timezone.utc
    with pytest.raises(ValueError, match="timezone-aware"):
        transform(US, datetime(2025, 1, 1))


def test_transform_takes_the_fast_path_for_clean_records(monkeypatch):
    import producer.transform as transform_module

    def careful_path_called(*args):
        raise AssertionError("a clean record went the careful (slow) way")

    monkeypatch.setattr(transform_module, "_build", careful_path_called)
    assert all(isinstance(transform(raw, NOW), User) for raw in generate("fast-only", 1, 200, ALL_NATS))
