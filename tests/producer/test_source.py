"""Source: paging, replay, retries and errors, over real HTTP against the local data source (no mocks)."""

from __future__ import annotations

import time
import uuid

import pytest

from producer.redact import without_secrets
from producer.source import DataSourceError, fetch_batches, make_session, page_plan
from tests.ports import closed_port


def fast_session(retries: int = 3):
    return make_session(retries=retries, backoff_factor=0.01)


def unique_seed() -> str:
    return f"seed-{uuid.uuid4().hex}"


@pytest.mark.parametrize("users,batch,plan", [
    (1000, 500, [(1, 500), (2, 500)]),
    (1001, 500, [(1, 500), (2, 500), (3, 1)]),
    (3, 5000, [(1, 3)]),
    (0, 10, []),
])
def test_page_plan(users, batch, plan):
    assert page_plan(users, batch) == plan


@pytest.mark.parametrize("batch", [0, 5001])
def test_page_plan_refuses_batches_the_api_refuses(batch):
    with pytest.raises(ValueError, match="batch_size"):
        page_plan(10, batch)


def test_fetches_n_users_as_pages_of_the_served_data(datasource):
    batches = list(fetch_batches(fast_session(), datasource.url, users=23, batch_size=10, seed="paging", nat="gb,ir"))
    assert [(b.page, len(b.records)) for b in batches] == [(1, 10), (2, 10), (3, 3)]
    # Page p of size b is exactly what the API serves for page p of size b (the last one cut locally).
    for batch in batches:
        served = datasource.get(results=10, seed="paging", page=batch.page, nat="gb,ir")["results"]
        assert batch.records == [without_secrets(r) for r in served[: len(batch.records)]]
        assert all(set(r["login"]) == {"uuid", "username"} for r in batch.records)  # secrets dropped on arrival
        assert "seed=paging" in batch.source and f"page={batch.page}" in batch.source
    assert {r["nat"] for b in batches for r in b.records} <= {"GB", "IR"}


def test_a_run_replays_exactly(datasource):
    def uuids():
        return [r["login"]["uuid"] for b in fetch_batches(fast_session(), datasource.url, 30, 7, "replay")
                for r in b.records]

    first = uuids()
    assert len(set(first)) == 30
    assert uuids() == first


def test_retries_5xx_then_succeeds(datasource):
    url = f"{datasource.url}?fail=500&fail_times=2"
    before = datasource.source.injected_failures
    batches = list(fetch_batches(fast_session(retries=3), url, users=5, batch_size=5, seed=unique_seed()))
    assert len(batches[0].records) == 5
    assert datasource.source.injected_failures - before == 2


def test_retries_429_and_honours_retry_after(datasource):
    url = f"{datasource.url}?fail=429&fail_times=1&retry_after=1"
    started = time.monotonic()
    batches = list(fetch_batches(fast_session(), url, users=3, batch_size=3, seed=unique_seed()))
    assert len(batches[0].records) == 3
    assert time.monotonic() - started >= 1.0  # waited as long as the server asked


def test_gives_up_after_retries_with_a_clear_error(datasource):
    url = f"{datasource.url}?fail=503"
    before = datasource.source.injected_failures
    with pytest.raises(DataSourceError, match=r"kept failing after retries .*503.*re-run with the same seed"):
        list(fetch_batches(fast_session(retries=2), url, users=3, batch_size=3, seed=unique_seed()))
    assert datasource.source.injected_failures - before == 3  # first try + 2 retries


def test_client_errors_are_not_retried(datasource):
    url = f"{datasource.url}?fail=400"
    before = datasource.source.injected_failures
    with pytest.raises(DataSourceError, match="refused"):
        list(fetch_batches(fast_session(retries=3), url, users=3, batch_size=3, seed=unique_seed()))
    assert datasource.source.injected_failures - before == 1


def test_error_body_raises_datasource_error(datasource):
    with pytest.raises(DataSourceError, match=r"refused GET .*injected error"):
        list(fetch_batches(fast_session(), f"{datasource.url}?fail=error", 3, 3, unique_seed()))
    with pytest.raises(DataSourceError, match="unknown nationality XX"):
        list(fetch_batches(fast_session(), datasource.url, 3, 3, "s", nat="xx"))


def test_read_timeout_is_retried_then_reported(datasource):
    session = fast_session(retries=1)
    with pytest.raises(DataSourceError, match="cannot reach the data source"):
        list(fetch_batches(session, f"{datasource.url}?delay=1", 1, 1, "slow", timeout=0.2))


def test_unreachable_source_says_what_to_do():
    port = closed_port()
    with pytest.raises(DataSourceError, match=rf"127.0.0.1:{port}.*Is it running\? Start the stack with `make up`"):
        list(fetch_batches(fast_session(retries=1), f"http://127.0.0.1:{port}/api/", 1, 1, "down"))


def test_seed_is_required(datasource):
    with pytest.raises(ValueError, match="seed"):
        list(fetch_batches(fast_session(), datasource.url, 1, 1, ""))
