"""The job rides out a registry that is not there yet: it waits (state `waiting`, registry), then carries on by itself.

The registry's port is closed when the job starts; a few seconds later a
pass-through to the real registry (pytest-httpserver) opens on that port,
which is what a restarted registry looks like to the job. Stopping the
shared services themselves is the fault suite's job (tests/faults/, on a
private stack).
"""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from core.job_state import job_state_path, read_job_state
from spark.stream_job import JobOptions, UserStreamJob
from tests.ports import closed_port
from tests.spark.harness import assert_rows_match, wait_until
from tests.spark.users import V1, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def pass_through(port: int, registry_url: str) -> HTTPServer:
    """A server on `port` that forwards every request to the real registry."""
    origin = registry_url.split("/apis/", 1)[0]

    def forward(request: Request) -> Response:
        answer = httpx.request(request.method, origin + request.full_path.rstrip("?"), content=request.get_data(),
                               headers={"Content-Type": request.headers.get("Content-Type", "application/json")}, timeout=30)
        return Response(answer.content, status=answer.status_code, content_type=answer.headers.get("content-type"))

    server = HTTPServer(host="127.0.0.1", port=port, threaded=True)
    server.expect_request(re.compile(".*")).respond_with_handler(forward)
    return server


def test_a_registry_that_comes_back_is_waited_for_and_nothing_is_lost(spark, corner_factory):
    corner = corner_factory("recover")
    run = corner.settings.users_topic
    corner.register(V1)
    users = [make_user(i, run) for i in range(20)]
    corner.produce_users(corner.serializer(V1), users)
    port = closed_port()
    settings = corner.settings.model_copy(update={
        "schema_registry_url": f"http://127.0.0.1:{port}/apis/ccompat/v7", "stream_fault_retry_seconds": 240.0,
    })
    options = JobOptions.from_settings(settings, trigger="available_now")
    state_file = job_state_path(options.checkpoint)
    job = UserStreamJob(spark, settings, options)
    outcome: list[BaseException | None] = []

    def run_job() -> None:
        try:
            job.run()
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread below
            outcome.append(exc)

    worker = threading.Thread(target=run_job, daemon=True)
    worker.start()
    server = None
    try:
        waiting = wait_until(lambda: (s := read_job_state(state_file)) and s["state"] == "waiting" and s, 120,
                             "the job to wait for the registry")
        assert waiting["service"] == "registry" and f"127.0.0.1:{port}" in waiting["detail"], waiting
        assert worker.is_alive(), "the job gave up instead of waiting"
        server = pass_through(port, corner.settings.schema_registry_url)
        server.start()
        worker.join(600)
        assert not worker.is_alive(), "the job did not finish within 10 minutes of the registry coming back"
    finally:
        if worker.is_alive() and job.query is not None:
            job.query.stop()
        if server is not None:
            server.stop()
    assert outcome == [None], outcome
    assert_rows_match(corner.rows(), users)
    assert corner.dead_letters(expected=0, timeout=3) == []
    assert read_job_state(state_file)["state"] == "running"
