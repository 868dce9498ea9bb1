"""The trailing-byte schemas of spark/decode.py, resolved by Avro's own Python library (no Spark, fast).

decode() reads each payload a second time with the writer schema plus a
1-byte fixed, projected onto that field alone: the read must fail at the end
of an exact record and succeed when any byte is left. The same check through
Spark's from_avro is tests/spark/test_decode.py's trailing-bytes test.
"""

from __future__ import annotations

import io
import json

import avro.errors
import avro.io
import avro.schema
import pytest

from spark.decode import TRAILING_FIELD, trailing_byte_reader, with_trailing_byte
from tests.spark.users import V1, avro_bytes, make_user, v2_schema


def read_trailing(writer: dict, payload: bytes) -> dict:
    """Read `payload` as decode() does for its trailing-byte check."""
    reader = avro.io.DatumReader(avro.schema.parse(with_trailing_byte(json.dumps(writer))),
                                 avro.schema.parse(trailing_byte_reader(json.dumps(writer))))
    return reader.read(avro.io.BinaryDecoder(io.BytesIO(payload)))


@pytest.mark.parametrize("schema", [V1, v2_schema()], ids=["v1", "v2"])
def test_an_exact_record_has_no_byte_left(schema):
    with pytest.raises((EOFError, avro.errors.AvroException)):
        read_trailing(schema, avro_bytes(schema, make_user(1)))


@pytest.mark.parametrize("extra", [b"\x00", b"\x04", b"\x00\x02abc"])
def test_any_byte_after_the_record_is_found(extra):
    assert read_trailing(V1, avro_bytes(V1, make_user(2)) + extra) == {TRAILING_FIELD: extra[:1]}


def test_a_v2_record_labelled_v1_has_bytes_left():
    v2 = v2_schema()
    assert read_trailing(V1, avro_bytes(v2, make_user(3) | {"favourite_colour": "teal"}))[TRAILING_FIELD]


def test_the_reader_projects_the_extra_field_alone():
    reader = json.loads(trailing_byte_reader(json.dumps(V1)))
    assert [f["name"] for f in reader["fields"]] == [TRAILING_FIELD]
    assert (reader.get("namespace"), reader["name"]) == (V1.get("namespace"), V1["name"])
