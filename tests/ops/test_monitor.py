"""Tests of the web monitor (ops.monitor): schema diffs, payload decoding, metrics, and the app against the real stack.

The app is driven in-process through FastAPI's TestClient with a Sampler whose
`sample_once()` the test calls, against a private corner of the shared stack
(its own topics, consumer group, subject and job files: see tests/ops/conftest.py).
/metrics is parsed with prometheus_client's own parser, as Prometheus would read it.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core import dead_letter
from ops.monitor import dead_letters, schemas
from ops.monitor.app import create_app
from ops.monitor.history import Sampler, throughput
from ops.monitor.metrics import exposition
from tests.ops.conftest import DECODE_REASON, TRANSFORM_REASON, USER_V1, USER_V2

# --- Schema diffs -------------------------------------------------------------------------------------


def test_diff_lists_every_field_with_its_change():
    v3 = {**USER_V2, "fields": [{"name": "id", "type": "string", "doc": "the user's uuid"}, USER_V2["fields"][2]]}
    rows = {row["name"]: row for row in schemas.diff_fields(USER_V1, v3)}
    assert [(name, row["change"], row["what"]) for name, row in rows.items()] == [
        ("id", "changed", ["doc"]), ("email", "removed", []), ("nickname", "added", [])]
    assert rows["nickname"]["to"] == {"type": ["null", "string"], "default": None, "doc": None, "has_default": True}
    assert rows["email"]["to"] is None


def test_a_default_that_appears_is_a_change_even_when_it_is_null():
    before = {**USER_V1, "fields": [{"name": "n", "type": ["null", "string"]}]}
    after = {**USER_V1, "fields": [{"name": "n", "type": ["null", "string"], "default": None}]}
    (row,) = schemas.diff_fields(before, after)
    assert (row["change"], row["what"]) == ("changed", ["default"])


def test_backward_verdict_comes_with_the_reason():
    assert schemas.backward_compatible(json.dumps(USER_V1), json.dumps(USER_V2)) == (True, [])
    without_default = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "age", "type": "int"}]}
    compatible, problems = schemas.backward_compatible(json.dumps(USER_V1), json.dumps(without_default))
    assert not compatible and any("age" in p for p in problems), problems


def test_diff_refuses_non_record_schemas():
    with pytest.raises(schemas.SchemaDiffError, match="only record schemas"):
        schemas.diff_fields({"type": "string"}, USER_V1)


# --- Payloads and tallies ----------------------------------------------------------------------------------


def test_transform_payload_is_json_with_credentials_masked():
    raw = json.dumps({"login": {"uuid": "u", "password": "hunter2", "salt": "s", "md5": None}, "email": "e"}).encode()
    fmt, payload, error = dead_letters.decode_payload(raw, dead_letter.TRANSFORM, "t", deserializer=None)
    assert (fmt, error) == ("json", None)
    assert payload == {"login": {"uuid": "u", "password": "***", "salt": "***", "md5": None}, "email": "e"}


@pytest.mark.parametrize(("raw", "why"), [
    (b"\x01\x00\x00\x00\x01abc", "not in the Confluent wire format (no magic byte 0 and schema id)"),
    (b"\x00\x00", "not in the Confluent wire format (no magic byte 0 and schema id)"),
    (None, "no value (a null record)"),
])
def test_records_that_are_not_framed_avro_are_shown_as_hex_with_the_reason(raw, why):
    fmt, payload, error = dead_letters.decode_payload(raw, dead_letter.DECODE, "t", deserializer=None)
    assert (fmt, payload, error) == ("hex", (raw or b"").hex(), why)


def test_schema_id_of_the_wire_format():
    assert dead_letters.schema_id_of(b"\x00\x00\x00\x01\x02rest") == 258
    assert dead_letters.schema_id_of(b"\x00\x00\x00") is None


def test_throughput_between_two_samples():
    assert throughput({"t": 10.0, "rows_written_total": 100}, {"t": 15.0, "rows_written_total": 150}) == 10.0
    assert throughput(None, {"t": 15.0, "rows_written_total": 150}) is None
    assert throughput({"t": 10.0, "rows_written_total": 500}, {"t": 15.0, "rows_written_total": 3}) is None  # totals restarted


# --- /metrics ------------------------------------------------------------------------------------------------


class FixedSampler:
    """Just the attributes the collector reads."""

    def __init__(self, latest):
        self.latest = latest


LATEST = {
    "services": [{"name": "kafka", "up": True}, {"name": "stream", "up": False}],
    "sample": {"rows_written_total": 5, "records_in_total": 6, "batch_duration_seconds": 1.5, "freshness_seconds": 12.0,
               "last_batch_age_seconds": 3.0, "rows_per_second": None},
    "dead_letters": {"by_reason": {"decode": {"bad \"magic\" byte": 2}, "transform": {"postcode missing": 1}}},
    "lag": {"group": "g", "partitions": [{"topic": "users", "partition": 0, "lag": 2}, {"topic": "users", "partition": 1, "lag": 0}]},
}


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition, by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if not s.name.endswith("_created")}


def test_metrics_are_valid_prometheus_text():
    samples = scrape(exposition(FixedSampler(LATEST)).decode())
    assert samples[("userstream_rows_written_total", ())] == 5
    assert samples[("userstream_records_in_total", ())] == 6
    assert samples[("userstream_dead_letters_total", (("reason", 'bad "magic" byte'), ("stage", "decode")))] == 2
    assert samples[("userstream_dead_letters_total", (("reason", "postcode missing"), ("stage", "transform")))] == 1
    assert samples[("userstream_batch_duration_seconds", ())] == 1.5
    assert samples[("userstream_freshness_seconds", ())] == 12.0
    assert samples[("userstream_consumer_lag", (("group", "g"), ("partition", "0"), ("topic", "users")))] == 2
    assert samples[("userstream_service_up", (("service", "stream"),))] == 0
    assert not any(name == "userstream_rows_per_second" for name, _ in samples), "an unknown value is left out, not 0"


def test_metrics_before_the_first_sample_are_empty():
    assert exposition(FixedSampler({})) == b""


# --- The app against the real stack -----------------------------------------------------------------------------


@pytest.fixture
def client(corner, tmp_path):
    sampler = Sampler(corner["settings"], timeout=10)
    with TestClient(create_app(corner["settings"], sampler, start_sampler=False, timeout=10)) as http:
        yield http, sampler


@pytest.mark.integration
def test_status_and_metrics_from_a_real_sample(client, corner):
    http, sampler = client
    assert http.get("/healthz").json()["sampled"] is False
    sample = sampler.sample_once()
    assert sample["lag"] == {f"{corner['settings'].users_topic}/{p}": lag for p, lag in ((0, 2), (1, 0), (2, 4))}
    assert sample["lag_total"] == 6
    assert sample["freshness_seconds"] is not None and 0 < sample["freshness_seconds"] < 600  # records produced just now
    status = http.get("/api/status").json()
    assert status["stream"]["state_line"].startswith("waiting for cassandra since ")
    assert [(p["partition"], p["committed"], p["lag"]) for p in status["lag"]["partitions"]] == [(0, 3, 2), (1, 2, 0), (2, None, 4)]
    assert status["dead_letters"]["by_reason"]["decode"] == {DECODE_REASON: 1, "not in the Confluent wire format": 1}
    services = {s["name"]: s["up"] for s in status["services"]}
    assert all(services[name] for name in ("kafka", "registry", "cassandra", "monitor")), services

    samples = scrape(http.get("/metrics").text)
    topic = corner["settings"].users_topic
    assert samples[("userstream_consumer_lag", (("group", corner["settings"].spark_consumer_group), ("partition", "2"), ("topic", topic)))] == 4
    assert samples[("userstream_dead_letters_total", (("reason", TRANSFORM_REASON), ("stage", "transform")))] == 1
    assert samples[("userstream_rows_written_total", ())] == 5
    assert samples[("userstream_batch_duration_seconds", ())] == 1.5
    assert http.get("/healthz").json() == {"sampled": True, "samples": 1, "failure": None, "version": "0.1.0"}
    assert json.loads(sampler.path.read_text())["samples"][-1] == sample, "the history survives a restart"


@pytest.mark.integration
def test_dead_letters_decoded_by_stage(client, corner):
    http, _ = client
    body = http.get("/api/dead-letters").json()
    by_partition = {d["partition"]: d for d in body["dead_letters"]}
    transform, avro, garbage = by_partition[0], by_partition[1], by_partition[2]
    assert (transform["stage"], transform["reason"], transform["payload_format"]) == ("transform", TRANSFORM_REASON, "json")
    assert transform["payload"]["login"] == {"uuid": "u-1", "password": "***", "sha256": "***"}
    assert (avro["reason"], avro["payload_format"], avro["payload"]) == (DECODE_REASON, "avro", {"id": "u-2", "email": "x@y.z"})
    assert avro["schema_id"] == corner["ids"][0] and avro["source"] == f"{corner['settings'].users_topic}/1/7"
    assert (garbage["payload_format"], garbage["payload"]) == ("hex", b"\x07garbage".hex())
    only_transform = http.get("/api/dead-letters", params={"stage": "transform"}).json()["dead_letters"]
    assert [d["partition"] for d in only_transform] == [0]


@pytest.mark.integration
def test_subject_versions_and_their_diff(client, corner):
    http, _ = client
    listing = {s["subject"]: s for s in http.get("/api/subjects").json()["subjects"]}
    mine = listing[corner["subject"]]
    assert mine["versions"] == [1, 2] and mine["ids"] == {"1": corner["ids"][0], "2": corner["ids"][1]}
    diff = http.get(f"/api/subjects/{corner['subject']}/diff", params={"old": 1, "new": 2}).json()
    assert diff["backward_compatible"] is True and diff["problems"] == []
    assert [(f["name"], f["change"]) for f in diff["fields"]] == [("id", "unchanged"), ("email", "unchanged"), ("nickname", "added")]
    missing = http.get(f"/api/subjects/{corner['subject']}/diff", params={"old": 1, "new": 9})
    assert (missing.status_code, missing.json()["detail"]) == (404, f"{corner['subject']} has no version 1 or 9")


def test_a_down_registry_is_a_503_that_says_why(tmp_path):
    from tests.ops.conftest import settings_for
    from tests.ports import closed_port

    settings = settings_for(schema_registry_url=f"http://127.0.0.1:{closed_port()}", stack_home=tmp_path)
    with TestClient(create_app(settings, Sampler(settings), start_sampler=False, timeout=2)) as http:
        answer = http.get("/api/subjects")
        assert (answer.status_code, answer.json()["detail"]) == (503, "registry: connection refused")
        assert http.get("/api/status").status_code == 503
