"""The data source misbehaves while the real producer (`python -m producer.pipeline`) fetches from it.

A pytest-httpserver sits in front of the private stack's randomuser stand-in
and answers as each case says, relaying the stand-in's pages otherwise: a
storm of 5xx answers (short enough to ride out, then one too long that ends
the run with a clear error and is replayed), a 429 storm asking for an hour
of Retry-After, a 200 whose body is an HTML page, and a user too big to
publish. The four cases share one lane and one job (their faults are all on
the producer's side); each uses its own seed, so its users are its own, and
checks them against what the stand-in serves, mapped by the producer's
transform: exactly those in Cassandra, field by field, and the poison on
the dead-letter topic once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
import requests
from werkzeug import Request, Response

from core import dead_letter
from core.settings import REPO_ROOT
from producer.source import fetch_batches, make_session
from producer.transform import User, transform
from tests.faults.checks import Poison, assert_exactly_once, wait_drained
from tests.faults.lane import CATCH_UP_SECONDS, Lane

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.spark]

USERS, PAGE = 600, 200
RUN_SECONDS = 180
PRODUCER_ENV = {
    "DATASOURCE_RETRIES": "4",
    "DATASOURCE_BACKOFF_FACTOR": "0.1",
    "DATASOURCE_MAX_RETRY_AFTER_SECONDS": "1",
    "DATASOURCE_DEADLINE_SECONDS": "120",
    "DATASOURCE_TIMEOUT_SECONDS": "20",
}
# (page, how many requests for that page came before) -> an answer instead of the stand-in's page, or None.
Misbehaviour = Callable[[int, int], Response | None]


@dataclasses.dataclass
class Front:
    """The stand-in behind a misbehaving server: `misbehave` decides per request, `inflate` edits relayed records."""

    upstream: str
    misbehave: Misbehaviour = lambda page, nth: None
    inflate: Callable[[int, list[dict]], None] = lambda page, records: None
    seen: dict[int, int] = dataclasses.field(default_factory=dict)

    def __call__(self, request: Request) -> Response:
        page = int(request.args.get("page", "1"))
        nth = self.seen.get(page, 0)
        self.seen[page] = nth + 1
        answer = self.misbehave(page, nth)
        if answer is not None:
            return answer
        upstream = requests.get(self.upstream, params=request.args.to_dict(), timeout=30)
        body = upstream.json()
        self.inflate(page, body.get("results") or [])
        return Response(json.dumps(body), status=upstream.status_code, content_type="application/json")


@dataclasses.dataclass
class ProducerLane:
    lane: Lane
    front_url: str = ""

    def run(self, seed: str, **env: str) -> subprocess.CompletedProcess:
        """`python -m producer.pipeline` against the front, with the lane's topics; its exit, stdout and stderr."""
        run_env = {**os.environ, **self.lane.stack.env, **self.lane.corner.env(), **PRODUCER_ENV,
                   "DATASOURCE_URL": self.front_url, **env}
        return subprocess.run(
            [sys.executable, "-m", "producer.pipeline", "--users", str(USERS), "--batch-size", str(PAGE), "--seed", seed,
             "--max-dead-letter-fraction", "0.5"],
            cwd=REPO_ROOT, env=run_env, capture_output=True, text=True, timeout=RUN_SECONDS,
        )

    def served(self, seed: str) -> list[dict]:
        """What the stand-in serves for the seed, as the producer's transform maps it (ingested_at aside)."""
        users = []
        for batch in fetch_batches(make_session(), self.lane.stack.settings.datasource_url, USERS, PAGE, seed):
            for raw in batch.records:
                user = transform(raw, ingested_at=datetime.now(timezone.utc))
                assert isinstance(user, User), user
                users.append({k: v for k, v in dataclasses.asdict(user).items() if k != "ingested_at"})
        return users

    def settle(self, row, users: list[dict], poison: list[Poison], run_ended: float) -> None:
        """This case's users and poison only (the lane is shared): exactly once, and the job alive without restarts."""
        corner, job = self.lane.corner, self.lane.job
        wait_drained(corner, job, CATCH_UP_SECONDS)  # the run is over: what the topic holds now is what it held then
        row.catch_up_seconds = round(time.monotonic() - run_ended, 1)
        own = {user["id"] for user in users} | {record.key for record in poison}
        rows = {key: value for key, value in corner.rows().items() if key in own}
        dead = [m for m in corner.dead_letters(expected=0, timeout=5) if (m.key() or b"").decode() in own]
        row.rows_landed, row.dead_lettered, row.job_restarts = len(rows), len(dead), job.restarts()
        assert_exactly_once(rows, dead, users, poison)
        assert job.restarts() == 0 and job.alive(), job.describe()


@pytest.fixture(scope="module")
def producer_lane(private_stack, tmp_path_factory):
    lane = Lane.create(private_stack, tmp_path_factory.mktemp("producer-lane"), "producer")
    try:
        lane.start_job()
        yield ProducerLane(lane)
    finally:
        lane.close()


@pytest.fixture
def front(producer_lane, httpserver):
    """A fresh misbehaving front for this case, in front of the private stand-in."""
    handler = Front(producer_lane.lane.stack.settings.datasource_url)
    httpserver.expect_request("/api/").respond_with_handler(handler)
    producer_lane.front_url = httpserver.url_for("/api/")
    return handler


def status(code: int, **headers: str) -> Response:
    return Response(json.dumps({"error": f"injected {code}"}), status=code, headers=headers, content_type="application/json")


def test_a_5xx_storm_is_ridden_out_and_one_past_the_retries_ends_the_run_clearly(producer_lane, front, case):
    case.case = "data source 5xx storm (within retries, then past them + replay)"
    seed = "faults-5xx"
    users = producer_lane.served(seed)
    case.users_produced = len(users)
    codes = (500, 502, 504)
    # Every page: three 5xx answers first (within DATASOURCE_RETRIES=4). Page 3 then: 503 until the storm is over.
    storm = {"over": False}

    def misbehave(page: int, nth: int) -> Response | None:
        if nth < len(codes):
            return status(codes[nth])
        return status(503) if page == 3 and not storm["over"] else None

    front.misbehave = misbehave
    first = producer_lane.run(seed)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "data source" in first.stderr and "503" in first.stderr and "same seed" in first.stderr, first.stderr

    storm["over"] = True
    second = producer_lane.run(seed)
    ended = time.monotonic()
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1]) == {"fetched": USERS, "published": USERS, "dead_lettered": 0}
    producer_lane.settle(case, users, [], ended)
    case.note = "3 x 5xx before every page; first run: page 3 kept failing, exit 1; replay with the same seed"


def test_a_429_storm_asking_for_an_hour_is_capped(producer_lane, front, case):
    case.case = "data source 429 storm, Retry-After 3600 s (capped at 1 s)"
    seed = "faults-429"
    users = producer_lane.served(seed)
    case.users_produced = len(users)
    front.misbehave = lambda page, nth: status(429, **{"Retry-After": "3600"}) if nth < 3 else None
    began = time.monotonic()
    run = producer_lane.run(seed)
    ended = time.monotonic()
    assert run.returncode == 0, run.stderr
    assert ended - began < 90, f"the run took {ended - began:.0f} s: Retry-After was not capped"
    producer_lane.settle(case, users, [], ended)
    case.note = f"3 x 429 before every page; the run took {ended - began:.0f} s"


def test_a_200_with_an_html_body_stops_the_run_clearly_and_the_replay_lands_everyone_once(producer_lane, front, case):
    case.case = "data source answers 200 with HTML (non-JSON) + replay"
    seed = "faults-html"
    users = producer_lane.served(seed)
    case.users_produced = len(users)
    page = "<html><body><h1>Scheduled maintenance</h1></body></html>"
    front.misbehave = lambda p, nth: Response(page, status=200, content_type="text/html") if p == 2 and nth == 0 else None
    first = producer_lane.run(seed)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "non-JSON" in first.stderr and "DATASOURCE_URL" in first.stderr, first.stderr
    second = producer_lane.run(seed)
    ended = time.monotonic()
    assert second.returncode == 0, second.stderr
    producer_lane.settle(case, users, [], ended)
    case.note = "page 2's first answer is an HTML page: exit 1 naming it, page 1 already published; replay"


def test_a_user_too_big_to_publish_is_dead_lettered_once(producer_lane, front, case):
    case.case = "oversize record (producer side)"
    seed = "faults-oversize"
    users = producer_lane.served(seed)
    victim = users[PAGE + 7]  # on page 2

    def inflate(page: int, records: list[dict]) -> None:
        if page == 2:
            record = records[7]
            record["name"]["first"] = record["name"]["last"] = "x" * 1000
            record["location"]["street"]["name"] = record["location"]["city"] = record["location"]["state"] = "y" * 1000

    front.inflate = inflate
    run = producer_lane.run(seed, PRODUCER_MAX_MESSAGE_BYTES="2048")
    ended = time.monotonic()
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"fetched": USERS, "published": USERS - 1, "dead_lettered": 1}
    expected = [user for user in users if user["id"] != victim["id"]]
    case.users_produced = len(users)
    producer_lane.settle(case, expected, [Poison(victim["id"], dead_letter.TRANSFORM, "PRODUCER_MAX_MESSAGE_BYTES")], ended)
    case.note = "PRODUCER_MAX_MESSAGE_BYTES=2048; one user with five 1000-character fields (each under the 1024 string bound)"
