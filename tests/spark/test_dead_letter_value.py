"""A dead letter's value is capped: a record the source topic took compressed can be too big for the dead-letter topic.

Without the cap a refused 18 MiB row made every attempt of its batch fail with
RecordTooLargeException (tests/faults/test_poison_data.py shows it end to end).
"""

from __future__ import annotations

import pytest

from core import dead_letter
from core.settings import Settings
from spark.sink import DeadLetterSink

pytestmark = pytest.mark.spark

COLUMNS = ("key binary, value binary, headers array<struct<key:string,value:binary>>, topic string, "
           "partition int, offset long, schema_id int, reason string")


def letters(spark, rows, cap):
    sink = DeadLetterSink(Settings(_env_file=None, dead_letter_max_value_bytes=cap))
    value, headers = sink.value_and_headers(dead_letter.WRITE)
    out = spark.createDataFrame(rows, COLUMNS).select("key", value.alias("value"), headers.alias("headers")).collect()
    return {bytes(r.key): (None if r.value is None else bytes(r.value), {h.key: bytes(h.value).decode() for h in r.headers}) for r in out}


def test_a_value_over_the_cap_keeps_its_first_bytes_and_says_its_full_size(spark):
    big = bytes(range(256)) * 10
    result = letters(spark, [(b"big", big, None, "users", 2, 41, 7, "Cassandra refused the row: too big")], cap=1024)
    value, headers = result[b"big"]
    assert value == big[:1024]
    assert headers[dead_letter.ORIGINAL_BYTES] == "2560"
    assert headers[dead_letter.REASON] == ("Cassandra refused the row: too big; the record is 2560 bytes, only its first 1024 "
                                           "are kept here (DEAD_LETTER_MAX_VALUE_BYTES): the whole record is at dead_letter.source")
    assert headers[dead_letter.SOURCE] == "users/2/41" and headers[dead_letter.STAGE] == "write"


def test_a_value_at_the_cap_or_below_is_kept_whole_without_a_size_header(spark):
    rows = [(b"at", b"a" * 1024, [("traceparent", b"00-x")], "users", 0, 1, None, "corrupt"),
            (b"tiny", b"\x00", None, "users", 0, 2, 3, "too short")]
    result = letters(spark, rows, cap=1024)
    assert result[b"at"] == (b"a" * 1024, {"traceparent": "00-x", dead_letter.STAGE: "write", dead_letter.REASON: "corrupt",
                                           dead_letter.SOURCE: "users/0/1"})
    assert result[b"tiny"][0] == b"\x00" and dead_letter.ORIGINAL_BYTES not in result[b"tiny"][1]


def test_a_tombstone_stays_a_tombstone(spark):
    value, headers = letters(spark, [(b"gone", None, None, "users", 1, 9, None, "null value (tombstone)")], cap=1024)[b"gone"]
    assert value is None
    assert dead_letter.ORIGINAL_BYTES not in headers
