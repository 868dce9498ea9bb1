"""Producer-side faults on the real Kafka and registry, with misbehaving HTTP servers (pytest-httpserver):
oversize and unencodable users are dead-lettered (stage transform) and the run goes on; what the size check
lets through the broker takes; a registry blip during the schema check is retried, a 404 is not; a source
that storms 5xx is ridden out, and one that never recovers ends at the run's deadline."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from core import dead_letter
from core.settings import Settings
from producer import register
from producer.pipeline import check_schema_registered, run
from producer.publish import RegistryError, SchemaNotRegisteredError
from producer.registry import SCHEMAS_DIR, RegistryUnavailable
from producer.source import DataSourceError
from standin.randomuser import generate
from tests.producer.stack_fixtures import consume

pytestmark = pytest.mark.integration


def clock() -> datetime:
    return datetime(2025, 5, 4, tzinfo=timezone.utc)


@pytest.fixture
def httpserver():
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def serve_users(httpserver, tamper, fail_first: int = 0, status: int = 503) -> dict:
    """Stand-in users (US), changed by `tamper(index, user)`; the first `fail_first` requests get `status`."""
    calls = {"n": 0}

    def handler(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] <= fail_first:
            return Response(json.dumps({"error": "storm"}), status=status, content_type="application/json")
        query = {key: values[0] for key, values in parse_qs(request.query_string.decode()).items()}
        page, results = int(query["page"]), int(query["results"])
        users = generate(query["seed"], page, results, ("US",))
        for index, user in enumerate(users):
            tamper((page - 1) * results + index, user)
        return Response(json.dumps({"results": users}), content_type="application/json")

    httpserver.expect_request("/api/").respond_with_handler(handler)
    calls["url"] = httpserver.url_for("/api/")
    return calls


def registered(settings: Settings, schema: str | None = None) -> None:
    args = ["--topic", settings.users_topic] + (["--schema", schema] if schema else [])
    assert register.main(args, settings=settings) == 0


def letters_by_record(settings: Settings, expected: int) -> dict[int, tuple[dict, bytes]]:
    letters = consume(settings, settings.dead_letter_topic, expected)
    assert len(letters) == expected
    out = {}
    for letter in letters:
        headers = dead_letter.read_headers(letter.headers())
        assert headers[dead_letter.STAGE] == dead_letter.TRANSFORM
        page = int(re.search(r"[?&]page=(\d+)", headers[dead_letter.SOURCE]).group(1))
        index = int(headers[dead_letter.SOURCE].split("#record=")[1])
        out[(page - 1) * 10 + index] = (headers, letter.value())
    return out


def test_oversize_users_are_dead_lettered_and_the_run_goes_on(stack_settings, httpserver):
    source = serve_users(httpserver, lambda i, user: user["location"]["street"].update(name="S" * 3000)
                         if i in (3, 14) else None)
    settings = stack_settings.model_copy(update={"datasource_url": source["url"], "producer_max_message_bytes": 2048,
                                                 "transform_max_string_length": 5000})
    registered(settings)
    counts = run(settings, users=20, batch_size=10, seed="oversize", clock=clock)
    assert counts == {"fetched": 20, "published": 18, "dead_lettered": 2}

    letters = letters_by_record(settings, 2)
    assert sorted(letters) == [3, 14]
    for headers, value in letters.values():
        reason = headers[dead_letter.REASON]
        assert re.match(r"serialize: the Avro value of user [0-9a-f-]{36} is \d{4} bytes, over the limit of 2048 "
                        r"bytes \(PRODUCER_MAX_MESSAGE_BYTES\); the raw record is \d{4} bytes, only its first 2048 "
                        r"are kept here", reason), reason
        assert len(value) == 2048 and value.startswith(b'{"gender": ')
    assert all(len(m.value()) <= 2048 for m in consume(settings, settings.users_topic, 18))


def test_at_the_default_limit_what_the_check_lets_through_the_broker_takes(stack_settings, httpserver):
    """PRODUCER_MAX_MESSAGE_BYTES=1000000 and librdkafka's message.max.bytes agree with the broker: a user of
    just under 1 MB is delivered, one just over is dead-lettered, its raw JSON cut to the limit, delivered too."""
    source = serve_users(httpserver, lambda i, user: user["location"]["street"].update(
        name="N" * {0: 995_000, 1: 1_000_100}[i]))
    settings = stack_settings.model_copy(update={"datasource_url": source["url"],
                                                 "transform_max_string_length": 1_100_000})
    assert settings.producer_max_message_bytes == 1_000_000
    registered(settings)
    counts = run(settings, users=2, batch_size=2, seed="big", clock=clock)
    assert counts == {"fetched": 2, "published": 1, "dead_lettered": 1}
    (published,) = consume(settings, settings.users_topic, 1)
    assert 995_000 < len(published.value()) <= 1_000_000
    (letter,) = consume(settings, settings.dead_letter_topic, 1)
    assert len(letter.value()) == 1_000_000
    assert "over the limit of 1000000 bytes" in dead_letter.read_headers(letter.headers())[dead_letter.REASON]


def test_users_the_registered_schema_cannot_encode_are_dead_lettered(stack_settings, datasource, tmp_path):
    """A subject whose schema requires national_id_value: Iranian users have none, so they are dead-lettered
    naming the schema; everyone else is published."""
    schema = json.loads((SCHEMAS_DIR / "user.avsc").read_text())
    field = next(f for f in schema["fields"] if f["name"] == "national_id_value")
    field["type"] = "string"
    del field["default"]
    path = tmp_path / "strict.avsc"
    path.write_text(json.dumps(schema))
    registered(stack_settings, str(path))
    counts = run(stack_settings, users=30, batch_size=10, nat="us,ir", seed="strict", clock=clock)
    served = [u for page in (1, 2, 3) for u in datasource.get(results=10, seed="strict", page=page, nat="us,ir")["results"]]
    iranians = [i for i, user in enumerate(served) if user["nat"] == "IR"]
    assert 3 <= len(iranians) <= 27
    assert counts == {"fetched": 30, "published": 30 - len(iranians), "dead_lettered": len(iranians)}
    letters = letters_by_record(stack_settings, len(iranians))
    assert sorted(letters) == iranians
    for headers, value in letters.values():
        assert re.match(rf"serialize: user [0-9a-f-]{{36}} cannot be encoded with the schema registered for topic "
                        rf"'{stack_settings.users_topic}' \(TypeError: .*national_id_value\); check USER_SCHEMA_VERSION",
                        headers[dead_letter.REASON]), headers[dead_letter.REASON]
        assert json.loads(value)["nat"] == "IR"


def proxy_registry(httpserver, real_url: str, failures: int, status: int = 503) -> dict:
    """A registry in front of the real one that answers `status` to its first `failures` requests."""
    seen = {"requests": 0, "failed": 0}
    base = "/apis/ccompat/v7"

    def handler(request: Request) -> Response:
        seen["requests"] += 1
        if seen["failed"] < failures:
            seen["failed"] += 1
            return Response(json.dumps({"error_code": status * 100 + 1, "message": "blip"}), status=status,
                            content_type="application/json")
        forwarded = requests.request(request.method, real_url + request.path[len(base):], params=request.args,
                                     data=request.get_data(), timeout=10,
                                     headers={"Content-Type": request.headers.get("Content-Type", "application/json")})
        return Response(forwarded.content, status=forwarded.status_code,
                        content_type=forwarded.headers.get("Content-Type", "application/json"))

    httpserver.expect_request(re.compile(f"^{base}/.*")).respond_with_handler(handler)
    seen["url"] = httpserver.url_for(base)
    return seen


def test_a_registry_blip_during_the_schema_check_is_retried(stack_settings, httpserver, caplog):
    registered(stack_settings)
    proxy = proxy_registry(httpserver, stack_settings.schema_registry_url, failures=3)
    through_proxy = stack_settings.model_copy(update={"schema_registry_url": proxy["url"]})
    started = time.monotonic()
    result = check_schema_registered(through_proxy, attempts=5, backoff_seconds=0.2)
    assert result["subject"] == f"{stack_settings.users_topic}-value" and result["version"] == 1
    assert proxy == {**proxy, "failed": 3, "requests": 4}  # the client's own retries are off: attempts are attempts
    assert time.monotonic() - started < 10
    assert len([r for r in caplog.records if "schema registry:" in r.getMessage()]) == 3  # each retry logged


def test_a_registry_that_stays_broken_fails_after_the_attempts(stack_settings, httpserver):
    registered(stack_settings)
    proxy = proxy_registry(httpserver, stack_settings.schema_registry_url, failures=100, status=500)
    through_proxy = stack_settings.model_copy(update={"schema_registry_url": proxy["url"]})
    with pytest.raises(RegistryError, match=r"Schema Registry error for subject .* at http://localhost:\d+"):
        check_schema_registered(through_proxy, attempts=3, backoff_seconds=0.1)
    assert proxy["requests"] == 3


def test_an_unregistered_subject_is_final_at_once(stack_settings, httpserver):
    proxy = proxy_registry(httpserver, stack_settings.schema_registry_url, failures=0)
    through_proxy = stack_settings.model_copy(update={"schema_registry_url": proxy["url"]})
    started = time.monotonic()
    with pytest.raises(SchemaNotRegisteredError, match="make register"):
        check_schema_registered(through_proxy, attempts=5, backoff_seconds=1.0)
    assert proxy["requests"] == 1 and time.monotonic() - started < 2  # no retry, no wait


def test_an_unreachable_registry_is_retried_then_named(stack_settings):
    from tests.ports import closed_port

    down = stack_settings.model_copy(update={"schema_registry_url": f"http://127.0.0.1:{closed_port()}"})
    with pytest.raises(RegistryUnavailable, match="cannot reach the Schema Registry"):
        check_schema_registered(down, attempts=2, backoff_seconds=0.1)


def test_a_5xx_storm_from_the_source_is_ridden_out(stack_settings, httpserver):
    source = serve_users(httpserver, lambda i, user: None, fail_first=4, status=503)
    settings = stack_settings.model_copy(update={"datasource_url": source["url"], "datasource_retries": 5,
                                                 "datasource_backoff_factor": 0.05, "datasource_deadline_seconds": 30})
    registered(settings)
    assert run(settings, users=20, batch_size=10, seed="storm", clock=clock) == {
        "fetched": 20, "published": 20, "dead_lettered": 0}
    assert source["n"] == 4 + 2


def test_a_source_that_never_recovers_ends_at_the_deadline_naming_the_setting(stack_settings, httpserver):
    source = serve_users(httpserver, lambda i, user: None, fail_first=10**6, status=429)
    settings = stack_settings.model_copy(update={"datasource_url": source["url"], "datasource_retries": 1000,
                                                 "datasource_backoff_factor": 0.2, "datasource_deadline_seconds": 3})
    registered(settings)
    started = time.monotonic()
    with pytest.raises(DataSourceError, match=r"DATASOURCE_DEADLINE_SECONDS=3 s \(last: HTTP 429"):
        run(settings, users=20, batch_size=10, seed="never", clock=clock)
    assert time.monotonic() - started < 3 + 5  # the deadline, plus creating topics and the producer
