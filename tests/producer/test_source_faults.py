"""Source against a misbehaving HTTP server (pytest-httpserver): Retry-After caps, the run's deadline,
5xx and 429 storms, non-JSON answers, and secrets kept out of every error message."""

from __future__ import annotations

import json
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from producer.source import DataSourceError, fetch_batches, make_session

PAGE = {"results": [{"login": {"uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "username": "u",
                               "password": "hunter2-secret", "salt": "s4ltS4lt", "md5": "m" * 32,
                               "sha1": "a" * 40, "sha256": "b" * 64}}],
        "info": {"seed": "s", "results": 1, "page": 1, "version": "1.4"}}


class Script:
    """Answers requests from a list of (status, headers, body) in order; the last one repeats forever."""

    def __init__(self, *answers: tuple[int, dict, str], delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.calls: list[float] = []

    def __call__(self, request: Request) -> Response:
        self.calls.append(time.monotonic())
        time.sleep(self.delay)
        status, headers, body = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return Response(body, status=status, headers=headers)


@pytest.fixture
def httpserver():
    """A threaded server of our own: a handler left hanging by one test must not block the next."""
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def serve(httpserver, script: Script) -> str:
    httpserver.expect_request("/api/").respond_with_handler(script)
    return httpserver.url_for("/api/")


def fetch(url: str, *, retries: int = 5, backoff: float = 0.01, max_retry_after: float = 60.0,
          deadline: float | None = None, users: int = 1, timeout: float = 30.0) -> list:
    session = make_session(retries=retries, backoff_factor=backoff, max_retry_after=max_retry_after)
    return list(fetch_batches(session, url, users, 1, "s", timeout=timeout, deadline_seconds=deadline))


OK = (200, {"Content-Type": "application/json"}, json.dumps(PAGE))


def test_retry_after_is_capped_by_the_setting(httpserver):
    script = Script((429, {"Retry-After": "3600"}, "{}"), OK)
    started = time.monotonic()
    batches = fetch(serve(httpserver, script), max_retry_after=0.5, deadline=10)
    waited = script.calls[1] - script.calls[0]
    assert len(batches) == 1 and 0.5 <= waited < 3.0, waited  # not an hour
    assert time.monotonic() - started < 5


def test_5xx_storm_is_retried_within_the_deadline_then_succeeds(httpserver):
    script = Script(*[(503, {}, "busy")] * 3, (502, {}, "bad gateway"), OK)
    batches = fetch(serve(httpserver, script), retries=5, deadline=30)
    assert len(script.calls) == 5 and batches[0].records[0]["login"]["username"] == "u"


def test_429_storm_ends_at_the_deadline_with_an_error_naming_the_setting(httpserver):
    script = Script((429, {"Retry-After": "1"}, '{"error": "slow down"}'))
    started = time.monotonic()
    with pytest.raises(DataSourceError, match=r"did not finish within DATASOURCE_DEADLINE_SECONDS=2.5 s "
                                              r"\(last: HTTP 429; GET .*same seed"):
        fetch(serve(httpserver, script), retries=1000, deadline=2.5)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5 + 0.5, elapsed  # never waits past the deadline
    assert 2 <= len(script.calls) <= 3  # asked at 0 s, 1 s and maybe 2 s, then no wait fits


def test_5xx_storm_with_backoff_ends_at_the_deadline(httpserver):
    script = Script((500, {}, "oops"))
    started = time.monotonic()
    with pytest.raises(DataSourceError, match=r"DATASOURCE_DEADLINE_SECONDS=2 s \(last: HTTP 500"):
        fetch(serve(httpserver, script), retries=1000, backoff=0.2, deadline=2)
    assert time.monotonic() - started < 2.5


def test_retries_run_out_before_the_deadline(httpserver):
    script = Script((503, {}, "busy"))
    with pytest.raises(DataSourceError, match=r"kept failing after retries \(last answer HTTP 503\)"):
        fetch(serve(httpserver, script), retries=2, deadline=60)
    assert len(script.calls) == 3


def test_a_hanging_server_ends_at_the_deadline_not_the_request_timeout(httpserver):
    script = Script(OK, delay=5)
    started = time.monotonic()
    with pytest.raises(DataSourceError, match=r"DATASOURCE_DEADLINE_SECONDS=1 s \(last: (ReadTimeout|no time left)"):
        fetch(serve(httpserver, script), timeout=30, deadline=1)
    assert time.monotonic() - started < 2


def test_the_deadline_counts_fetching_only_not_the_callers_work_between_pages(httpserver):
    url = serve(httpserver, Script(OK))
    session = make_session(retries=0)
    pages = fetch_batches(session, url, users=3, batch_size=1, seed="s", deadline_seconds=1.0)
    for _ in pages:
        time.sleep(0.6)  # publishing a page: 1.8 s in all, more than the deadline
    # and pages that are slow to fetch do use it up
    slow = Script(OK, delay=0.45)
    httpserver.clear_all_handlers()
    url = serve(httpserver, slow)
    with pytest.raises(DataSourceError, match="DATASOURCE_DEADLINE_SECONDS=1 s"):
        list(fetch_batches(make_session(retries=0), url, users=3, batch_size=1, seed="s", deadline_seconds=1.0))
    assert len(slow.calls) == 3


def test_non_json_200_is_a_clear_error_and_not_retried(httpserver):
    script = Script((200, {"Content-Type": "text/html"}, "<html>Welcome to nginx!</html>"))
    with pytest.raises(DataSourceError, match=r"HTTP 200 with non-JSON content \(text/html\) .*nginx.*Not retried: "
                                              r"check DATASOURCE_URL"):
        fetch(serve(httpserver, script))
    assert len(script.calls) == 1


def test_secrets_in_a_broken_body_never_reach_the_error(httpserver):
    truncated = json.dumps(PAGE)[:150]  # cut inside the login block
    assert "hunter2" in truncated and "s4ltS4lt" in truncated
    with pytest.raises(DataSourceError) as caught:
        fetch(serve(httpserver, Script((200, {}, truncated))))
    message = str(caught.value)
    assert "<redacted>" in message
    assert not any(secret in message for secret in ("hunter2", "s4ltS4lt", "m" * 32))


def test_secrets_in_an_unexpected_json_shape_never_reach_the_error(httpserver):
    wrong = {"users": PAGE["results"]}
    with pytest.raises(DataSourceError, match=r"no `results` list .*\(got \['users'\]\)") as caught:
        fetch(serve(httpserver, Script((200, {}, json.dumps(wrong)))))
    assert "hunter2" not in str(caught.value)


def test_secrets_are_dropped_from_every_fetched_record(httpserver):
    batches = fetch(serve(httpserver, Script(OK)))
    assert batches[0].records == [{"login": {"uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "username": "u"}}]
    assert PAGE["results"][0]["login"]["password"] == "hunter2-secret"  # the input was not changed in place


def test_a_body_cut_off_mid_transfer_is_retried(httpserver):
    calls = []

    def handler(request: Request) -> Response:
        calls.append(time.monotonic())
        response = Response(json.dumps(PAGE), content_type="application/json")
        if len(calls) == 1:
            response = Response(json.dumps(PAGE)[:40], content_type="application/json")
            response.headers["Content-Length"] = "5000"  # promises more than it sends, then closes
        return response

    httpserver.expect_request("/api/").respond_with_handler(handler)
    batches = fetch(httpserver.url_for("/api/"), deadline=30)
    assert len(calls) == 2 and batches[0].records[0]["login"]["username"] == "u"


def test_a_url_without_a_scheme_is_a_clear_error():
    with pytest.raises(DataSourceError, match=r"request failed \(InvalidSchema: .*Check DATASOURCE_URL"):
        fetch("localhost:8765/api/")
