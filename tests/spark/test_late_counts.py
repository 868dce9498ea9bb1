"""Observed counts that reach the driver late do not stop the stream: a job of its own counts the batch.

Spark hands a write's observed metrics over on its listener bus, which a
busy or stuck driver can hold up. Here the wait for them is cut to nothing,
so they are late for every batch, as they were when a CI run's listener bus
stalled. The batch must still land exactly, dead letters and counts
included, and the log must show the JVM's threads of that moment.
"""

from __future__ import annotations

import logging

import pytest

from core.dead_letter import read_headers
from spark import summary
from spark.progress import progress_path, read_progress
from spark.stream_job import JobOptions, UserStreamJob
from tests.spark.harness import assert_rows_match
from tests.spark.users import V1, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def test_late_observed_counts_are_counted_by_a_job_and_the_stream_goes_on(spark, corner_factory, monkeypatch, caplog):
    corner = corner_factory("late_counts")
    run = corner.settings.users_topic
    schema_id = corner.register(V1)
    serializer = corner.serializer(V1)
    users = [make_user(500 + i, run) for i in range(6)]
    truncated = corner.encode(serializer, make_user(510, run))[:12]
    corner.produce_raw([*((u["id"].encode(), corner.encode(serializer, u)) for u in users), (b"truncated", truncated)])
    monkeypatch.setattr(summary, "OBSERVED_COUNTS_TIMEOUT_SECONDS", 0.0)

    options = JobOptions.from_settings(corner.settings, trigger="available_now")
    with caplog.at_level(logging.WARNING, logger="spark.stream_job"):
        query = UserStreamJob(spark, corner.settings, options).start()
        query.awaitTermination(300)
    assert not query.isActive, "the batch did not finish in 5 minutes"
    assert query.exception() is None, query.exception()

    assert_rows_match(corner.rows(), users)
    [letter] = corner.dead_letters(expected=1)
    headers = read_headers(letter.headers())
    assert letter.key() == b"truncated" and headers["dead_letter.stage"] == "decode", headers
    assert headers["dead_letter.schema_id"] == str(schema_id)
    progress = read_progress(progress_path(options.checkpoint))
    assert progress["totals"] == {"records_in": 7, "rows_written": 6, "dead_lettered": 1, "batches": 1}, progress
    [late] = [r.getMessage() for r in caplog.records if "observed counts did not arrive" in r.getMessage()]
    assert '"spark-listener-group-shared"' in late and "\n    at " in late, late
