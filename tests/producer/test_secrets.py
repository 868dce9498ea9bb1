"""Issue 9.1: the API's login secrets never leave the source, whatever the records look like.

The producer (producer.pipeline.run, the real Kafka and registry) reads a
source that serves stand-in users, some malformed, each with unique
password/salt/md5/sha1/sha256 values that all start with one marker. Then
every topic it wrote (values, keys, headers), everything the test process
printed or logged, and every log under .stack/logs/ is scanned: no secret,
not even the marker, may appear.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timezone
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from producer import register
from producer.pipeline import run
from producer.redact import LOGIN_SECRETS
from standin.randomuser import ALL_NATS, generate
from tests.producer.stack_fixtures import consume

pytestmark = pytest.mark.integration
MARK = f"sekret{secrets.token_hex(4)}"  # every secret starts with it: one search finds any of them, or a piece
USERS, PAGE = 90, 30


class SecretSource:
    """Stand-in pages (30 % malformed, plus logins of the wrong shape) with unique secrets, all remembered."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def _secret(self, kind: str) -> str:
        value = f"{MARK}{kind}{secrets.token_hex(12)}"
        self.secrets.add(value)
        return value

    def __call__(self, request: Request) -> Response:
        query = {key: values[0] for key, values in parse_qs(request.query_string.decode()).items()}
        users = generate(query["seed"], int(query["page"]), int(query["results"]), ALL_NATS, malformed=0.3)
        for index, user in enumerate(users):
            login = user.get("login")
            if isinstance(login, dict):
                login.update({key: self._secret(key) for key in LOGIN_SECRETS})
                if index % 10 == 3:  # a login block of the wrong shape: a list around the real one
                    user["login"] = [login]
                elif index % 10 == 7:  # a broken uuid next to the secrets: rejected naming login.uuid
                    login["uuid"] = f"not-a-uuid-{index}"
        return Response(json.dumps({"results": users, "info": {"seed": query["seed"], "page": int(query["page"])}}),
                        content_type="application/json")


@pytest.fixture
def secret_source():
    server = HTTPServer(threaded=True)
    server.start()
    source = SecretSource()
    server.expect_request("/api/").respond_with_handler(source)
    yield server.url_for("/api/"), source
    server.clear()
    server.stop()


def leaks(blob: bytes, source: SecretSource) -> list[str]:
    """The secrets (or the marker alone, i.e. a piece of one) found in `blob`."""
    found = [value for value in source.secrets if value.encode() in blob]
    return found or ([MARK] if MARK.encode() in blob else [])


def message_bytes(message) -> bytes:
    headers = b"".join(key.encode() + b"=" + (value or b"") for key, value in message.headers() or [])
    return b"|".join([message.key() or b"", message.value() or b"", headers])


def test_no_login_secret_reaches_a_topic_a_log_or_the_terminal(stack_settings, secret_source, caplog, capfd):
    url, source = secret_source
    assert register.main(["--topic", stack_settings.users_topic], settings=stack_settings) == 0
    settings = stack_settings.model_copy(update={"datasource_url": url})
    caplog.set_level(logging.DEBUG)
    counts = run(settings, users=USERS, batch_size=PAGE, seed="secrets",
                 clock=lambda: datetime(2025, 5, 4, tzinfo=timezone.utc))
    assert counts["fetched"] == USERS and counts["dead_lettered"] >= 20 and counts["published"] >= 40
    assert len(source.secrets) >= 5 * 60  # the source really sent secrets with most records

    written = {topic: consume(settings, topic, expected)
               for topic, expected in ((settings.users_topic, counts["published"]),
                                       (settings.dead_letter_topic, counts["dead_lettered"]))}
    assert [len(messages) for messages in written.values()] == [counts["published"], counts["dead_lettered"]]
    reasons = [dict(m.headers())["dead_letter.reason"].decode() for m in written[settings.dead_letter_topic]]
    assert any(r.startswith("login: expected an object, got list") for r in reasons)  # the wrong-shape logins
    assert any(r.startswith("login.uuid: not a UUID") for r in reasons)
    for topic, messages in written.items():
        for message in messages:
            assert not leaks(message_bytes(message), source), f"secret on {topic}: {message_bytes(message)[:300]!r}"

    out, err = capfd.readouterr()
    assert not leaks((out + err + caplog.text).encode(), source), "secret printed or logged by the producer"
    logs = sorted((stack_settings.stack_home / "logs").glob("*.log"))
    assert logs, "no service logs to scan under .stack/logs"
    for log_file in logs:
        assert not leaks(log_file.read_bytes(), source), f"secret in {log_file}"
