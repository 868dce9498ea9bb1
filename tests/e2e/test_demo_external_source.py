"""The main command against a data source the launcher did not start: used as it is, rows land field by field.

A second randomuser-compatible API runs in this test process (pytest-httpserver,
on its own port and path), serving users of its own: the stand-in's generator
under a seed space of its own, so none of them is a user the local stand-in
would serve. `DATASOURCE_URL` points the demo there; the launcher must say the
source is external and start nothing for it, the DAG must fetch every page
from it, and Cassandra must hold exactly its users.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from werkzeug import Request, Response

from core.settings import load_settings
from standin.randomuser import ALL_NATS, VERSION, generate
from tests.e2e.demo_run import DemoProcess, assert_rows_match, served_users

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.airflow, pytest.mark.spark]

USERS = 300
BATCH = 100
PATH = "/independent/api/"


def independent_users(request: Request) -> Response:
    """randomuser's query parameters and answer shape, with users no other server here gives out."""
    results, page = int(request.args.get("results", 1)), int(request.args.get("page", 1))
    seed = request.args.get("seed") or uuid.uuid4().hex  # random without one, like randomuser.me
    nats = tuple(n.strip().upper() for n in request.args.get("nat", "").split(",") if n.strip()) or ALL_NATS
    users = generate(f"independent-source:{seed}", page, results, nats)
    body = {"results": users, "info": {"seed": seed, "results": results, "page": page, "version": VERSION}}
    return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def independent_source(httpserver):
    httpserver.expect_request(PATH, method="GET").respond_with_handler(independent_users)
    return httpserver.url_for(PATH)


def test_the_demo_reads_an_external_source_as_it_is(independent_source, httpserver):
    settings = load_settings()
    seed = f"e2e-ext-{uuid.uuid4().hex[:8]}"
    started = datetime.now(timezone.utc)
    demo = DemoProcess(["--users", str(USERS), "--batch-size", str(BATCH), "--seed", seed],
                       env={"DATASOURCE_URL": independent_source})
    result = demo.finish(timeout=900)
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"

    external = [line for line in result.stdout.splitlines() if line.startswith("up: datasource")]
    assert external == [f"up: datasource external   DATASOURCE_URL={independent_source} is not the local stand-in "
                        "(http://localhost:<port>/api/): used as it is, not started here"], result.stdout[:3000]
    assert f"{USERS} users from {independent_source}" in result.stdout
    assert f"rows in Cassandra    {USERS} from this run" in result.stdout

    pages = {int(request.args["page"]) for request, _ in httpserver.log
             if request.args.get("seed") == seed and request.args.get("results") == str(BATCH)}
    assert pages == set(range(1, USERS // BATCH + 1)), pages  # the DAG read every page here

    expected = served_users(independent_source, seed, USERS, BATCH)
    assert len(expected) == USERS
    from_standin = served_users(settings.datasource_url, seed, USERS, BATCH)
    assert not set(expected) & set(from_standin), "the two sources must not share users, or the test proves nothing"
    assert_rows_match(settings, expected, started)
