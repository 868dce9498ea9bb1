"""A record whose schema id the registry does not know YET: the job waits (state `waiting`, registry), then writes it.

This is the registry that answers 404 for a moment (a producer registered a
moment ago, a registry replica catching up): within
REGISTRY_NOT_FOUND_GRACE_SECONDS the record must be written, not dead-lettered.
The registry hands out content ids in sequence, so the id the next new schema
will get is learnt by registering a probe just before.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema

from core.job_state import job_state_path, read_job_state
from spark.progress import progress_path, read_progress
from spark.stream_job import JobOptions, UserStreamJob
from tests.spark.harness import assert_rows_match, wait_until
from tests.spark.users import V1, avro_bytes, framed, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def v1_with_doc() -> dict:
    """V1 with a new doc: the same fields, but new content, so the registry gives it a new id."""
    schema = copy.deepcopy(V1)
    schema["doc"] = f"test schema {uuid.uuid4().hex}"
    return schema


def test_an_id_registered_within_the_grace_is_written_not_dead_lettered(spark, corner_factory):
    corner = corner_factory("grace")
    corner.settings = corner.settings.model_copy(update={"registry_not_found_grace_seconds": 120.0})
    run = corner.settings.users_topic
    corner.register(V1)
    options = JobOptions.from_settings(corner.settings, trigger="processing", interval="1 second")
    state_file = job_state_path(options.checkpoint)
    query = UserStreamJob(spark, corner.settings, options).start()
    try:
        # Two scratch subjects: within one subject the registry would hand back the probe's id for the
        # late schema (the same canonical form: docs do not count).
        probe, scratch = f"{run}-probe-value", f"{run}-scratch-value"
        probe_id = corner.registry.register_schema(probe, Schema(json.dumps(v1_with_doc()), "AVRO"))
        corner.cleanups.append(lambda: corner.delete_subject(probe))
        late_schema, late_id = v1_with_doc(), probe_id + 1
        user = make_user(1, run)
        corner.produce_raw([(user["id"].encode(), framed(late_id, avro_bytes(late_schema, user)))])

        waiting = wait_until(lambda: (s := read_job_state(state_file)) and s["state"] == "waiting" and s, 120,
                             "the job to wait for the registry")
        assert waiting["service"] == "registry" and f"schema id(s) {late_id} not found" in waiting["detail"], waiting
        registered = corner.registry.register_schema(scratch, Schema(json.dumps(late_schema), "AVRO"))
        corner.cleanups.append(lambda: corner.delete_subject(scratch))
        assert registered == late_id, "another client registered a schema between the probe and now: run the test again"

        wait_until(lambda: corner.count() == 1, 120, "the row")
        wait_until(lambda: ((read_progress(progress_path(options.checkpoint)) or {}).get("totals") or {}).get("records_in") == 1,
                   60, "the batch's progress record")
        assert query.isActive
    finally:
        query.stop()
    assert query.exception() is None
    assert_rows_match(corner.rows(), [user])
    assert corner.rows()[user["id"]]["schema_id"] == late_id
    assert corner.dead_letters(expected=0, timeout=3) == []
    assert read_job_state(state_file)["state"] == "running"
