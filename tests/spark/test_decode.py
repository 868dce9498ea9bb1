"""Decode, without Kafka: Confluent-framed bytes built by hand, every way a record can be bad.

These pin down what from_avro PERMISSIVE really does in this Spark version
(see spark/decode.py) and that each poison record gets its own reason
instead of a wrong row or a crashed batch.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from spark.decode import decode, good_rows, with_header
from spark.registry import RegisteredSchema, SchemaSnapshot
from tests.spark.users import V1, avro_bytes, framed, make_user, v2_schema

pytestmark = pytest.mark.spark

V2 = v2_schema()
V1_ID, V2_ID, UNKNOWN_ID, INCOMPATIBLE_ID = 11, 12, 99, 13
KAFKA_COLUMNS = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, headers array<struct<key:string,value:binary>>"


def snapshot() -> SchemaSnapshot:
    """Reader v2; writers v1 and v2 known, one id unknown, one incompatible."""
    reader = RegisteredSchema(id=V2_ID, schema=json.dumps(V2), subject="t-value", version=2)
    return SchemaSnapshot(
        reader=reader,
        writers={V1_ID: json.dumps(V1), V2_ID: json.dumps(V2)},
        unknown=frozenset({UNKNOWN_ID}),
        incompatible={INCOMPATIBLE_ID: "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/28: x"},
    )


def run_decode(spark, values: list[tuple[str, bytes | None, bytes | None]]):
    """Decode (name, key, value) triples as if they came from Kafka; return rows keyed by name (the offset)."""
    ts = dt.datetime(2024, 1, 1)
    rows = [(key, value, "t", 0, offset, ts, None) for offset, (_, key, value) in enumerate(values)]
    df = spark.createDataFrame(rows, KAFKA_COLUMNS)
    decoded = decode(with_header(df), snapshot()).collect()
    return {values[row.offset][0]: row for row in decoded}


def test_good_v1_and_v2_records_decode_into_the_reader(spark):
    u1, u2 = make_user(1), dict(make_user(2), favourite_colour="green")
    out = run_decode(spark, [
        ("v1", u1["id"].encode(), framed(V1_ID, avro_bytes(V1, u1))),
        ("v2", u2["id"].encode(), framed(V2_ID, avro_bytes(V2, u2))),
        ("other-key", b"not-this-user", framed(V1_ID, avro_bytes(V1, u1))),
    ])
    assert out["v1"].reason is None and out["v2"].reason is None
    assert out["v1"].schema_id == V1_ID and out["v2"].schema_id == V2_ID
    assert out["v1"].user.favourite_colour == "unknown"  # the reader's default for v1 data
    assert out["v2"].user.favourite_colour == "green"
    assert out["v1"].user.first_name == u1["first_name"] and out["v1"].user.id == u1["id"]
    assert out["v1"].user.national_id_value == u1["national_id_value"]
    assert out["other-key"].reason == f"Kafka key not-this-user is not the record's id {u1['id']}"


def test_every_truncation_is_dead_lettered_never_a_row(spark):
    payload = avro_bytes(V1, make_user(3))
    cases = [(f"cut{n}", b"k", framed(V1_ID, payload[:n])) for n in range(len(payload))]
    out = run_decode(spark, cases)
    assert {name: row.reason for name, row in out.items()} == {
        name: f"corrupt or truncated Avro for schema id {V1_ID}" for name, _, _ in cases
    }


def test_trailing_bytes_and_mislabelled_schema_id_are_caught(spark):
    u = dict(make_user(4), favourite_colour="red")
    out = run_decode(spark, [
        ("trailing", b"k", framed(V1_ID, avro_bytes(V1, u) + b"\x00\x02")),
        ("v2-bytes-labelled-v1", b"k", framed(V1_ID, avro_bytes(V2, u))),
        ("v1-bytes-labelled-v2", b"k", framed(V2_ID, avro_bytes(V1, u))),
        ("reader-trailing", b"k", framed(V2_ID, avro_bytes(V2, u) + b"\x04")),
    ])
    assert "trailing bytes" in out["trailing"].reason
    assert "trailing bytes" in out["v2-bytes-labelled-v1"].reason
    assert "trailing bytes" in out["reader-trailing"].reason
    assert out["v1-bytes-labelled-v2"].reason == f"corrupt or truncated Avro for schema id {V2_ID}"


def test_header_problems_each_have_their_reason(spark):
    good = avro_bytes(V1, make_user(5))
    out = run_decode(spark, [
        ("null-value", b"k", None),
        ("null-key", None, framed(V1_ID, good)),
        ("short", b"k", b"\x00\x00\x01"),
        ("empty", b"k", b""),
        ("magic", b"k", framed(V1_ID, good, magic=1)),
        ("unknown", b"k", framed(UNKNOWN_ID, good)),
        ("incompatible", b"k", framed(INCOMPATIBLE_ID, good)),
        ("huge-id", b"k", b"\x00\xff\xff\xff\xff" + good),
        ("header-only", b"k", framed(V1_ID, b"")),
    ])
    assert out["null-value"].reason.startswith("null value")
    assert out["null-key"].reason.startswith("null key")
    assert out["short"].reason.startswith("too short: 3 bytes")
    assert out["empty"].reason.startswith("too short: 0 bytes")
    assert out["magic"].reason.startswith("wrong magic byte 0x01")
    assert out["unknown"].reason.startswith(f"unknown schema id {UNKNOWN_ID}")
    assert out["incompatible"].reason.startswith(f"schema id {INCOMPATIBLE_ID} cannot be read as t-value version 2")
    assert out["huge-id"].reason.startswith("invalid schema id 4294967295")
    assert out["header-only"].reason == f"corrupt or truncated Avro for schema id {V1_ID}"


def test_huge_length_prefix_is_dead_lettered_not_an_out_of_memory(spark):
    """A string length of ~1 GB: without Avro's limit the JVM dies of OutOfMemoryError."""
    # zigzag varint for 2**30: the first field (id) claims to be a gigabyte long.
    varint, n = bytearray(), 2**30 << 1
    while n > 0x7F:
        varint.append((n & 0x7F) | 0x80)
        n >>= 7
    varint.append(n)
    out = run_decode(spark, [(f"huge{i}", b"k", framed(V1_ID, bytes(varint) + b"abc")) for i in range(4)])
    assert all(row.reason == f"corrupt or truncated Avro for schema id {V1_ID}" for row in out.values())


def test_random_bytes_and_bad_uuid_never_become_rows(spark):
    rng = random.Random(20240601)
    cases = [(f"rand{i}", b"k", framed(V1_ID, rng.randbytes(rng.randint(0, 400)))) for i in range(300)]
    cases.append(("bad-uuid", b"k", framed(V1_ID, avro_bytes(V1, dict(make_user(6), id="not-a-uuid-at-all")))))
    out = run_decode(spark, cases)
    assert [name for name, row in out.items() if row.reason is None] == []
    assert out["bad-uuid"].reason == "field id is not a UUID: not-a-uuid-at-all"


def test_good_rows_carry_provenance_and_reader_columns(spark):
    ts = dt.datetime(2024, 1, 1)
    user = make_user(7)
    df = spark.createDataFrame([(user["id"].encode(), framed(V1_ID, avro_bytes(V1, user)), "t", 2, 41, ts, None)], KAFKA_COLUMNS)
    rows = good_rows(decode(with_header(df), snapshot()))
    assert rows.columns == [f["name"] for f in V2["fields"]] + ["schema_id", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"]
    row = rows.collect()[0]
    assert (row.schema_id, row.kafka_topic, row.kafka_partition, row.kafka_offset) == (V1_ID, "t", 2, 41)
