"""The local randomuser.me stand-in: response shape, v1.4 quirks, determinism, limits, failure injection.

Real HTTP on loopback against the server the stack runs (`python -m standin.randomuser`).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from standin.randomuser import ALL_NATS, generate
from tests.ports import closed_port
from tests.producer.stack_fixtures import datasource  # noqa: F401  (fixture)

ISO_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PERSIAN = re.compile(r"^[\u0600-\u06FF\u200c ]+$")
CYRILLIC = re.compile(r"^[\u0400-\u04FF ]+$")
TOP_LEVEL = {"gender", "name", "location", "email", "login", "dob", "registered", "phone", "cell", "id",
             "picture", "nat"}


def get(ds, path: str = "", **params) -> requests.Response:
    return requests.get(ds.url.rstrip("/") + path, params=params, timeout=10)


def users(ds, **params) -> list[dict]:
    response = get(ds, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "error" not in body, body
    return body["results"]


def test_response_shape_matches_api_v1_4(datasource):
    body = get(datasource, results=3, seed="shape", page=2).json()
    assert body["info"] == {"seed": "shape", "results": 3, "page": 2, "version": "1.4"}
    assert len(body["results"]) == 3
    for user in body["results"]:
        assert set(user) == TOP_LEVEL
        assert set(user["name"]) == {"title", "first", "last"}
        assert set(user["location"]) == {"street", "city", "state", "country", "postcode", "coordinates", "timezone"}
        assert set(user["location"]["street"]) == {"number", "name"}
        assert isinstance(user["location"]["street"]["number"], int)
        assert set(user["login"]) == {"uuid", "username", "password", "salt", "md5", "sha1", "sha256"}
        assert str(uuid.UUID(user["login"]["uuid"])) == user["login"]["uuid"]
        for key in ("dob", "registered"):
            assert ISO_MILLIS.match(user[key]["date"]), user[key]
            assert isinstance(user[key]["age"], int) and user[key]["age"] >= 0
        for key in ("large", "medium", "thumbnail"):
            assert user["picture"][key].startswith("https://randomuser.me/api/portraits/")
        assert user["nat"] in ALL_NATS


def test_versioned_path_and_defaults(datasource):
    body = get(datasource, "/1.4/").json()
    assert len(body["results"]) == 1  # results defaults to 1
    assert body["info"]["page"] == 1
    assert re.fullmatch(r"[0-9a-f]{16}", body["info"]["seed"])  # a random seed is made up and echoed
    assert get(datasource).json()["info"]["seed"] != body["info"]["seed"]


def test_coordinates_and_timezone_are_strings(datasource):
    for user in users(datasource, results=50, seed="strings"):
        coordinates = user["location"]["coordinates"]
        assert isinstance(coordinates["latitude"], str) and -90 <= float(coordinates["latitude"]) <= 90
        assert isinstance(coordinates["longitude"], str) and -180 <= float(coordinates["longitude"]) <= 180
        assert isinstance(user["location"]["timezone"]["offset"], str)
        assert re.fullmatch(r"[+-]?\d{1,2}:\d{2}", user["location"]["timezone"]["offset"])


@pytest.mark.parametrize("nat,kind", [("GB", str), ("CA", str), ("NL", str), ("IE", str),
                                      ("US", int), ("DE", int), ("IR", int), ("UA", int)])
def test_postcode_type_depends_on_nationality(datasource, nat, kind):
    batch = users(datasource, results=20, seed="postcode", nat=nat.lower())
    assert {u["nat"] for u in batch} == {nat}
    assert all(type(u["location"]["postcode"]) is kind for u in batch)


@pytest.mark.parametrize("nat", ["IR", "NZ", "TR", "UA"])
def test_national_id_value_is_null_for_some_nationalities(datasource, nat):
    for user in users(datasource, results=10, seed="ids", nat=nat):
        assert user["id"] == {"name": "", "value": None}


def test_national_id_present_elsewhere(datasource):
    for user in users(datasource, results=10, seed="ids", nat="US,GB"):
        assert user["id"]["name"] in ("SSN", "NINO") and isinstance(user["id"]["value"], str)


def test_names_in_native_scripts(datasource):
    for user in users(datasource, results=20, seed="scripts", nat="IR"):
        assert PERSIAN.match(user["name"]["first"]) and PERSIAN.match(user["name"]["last"]), user["name"]
        assert user["email"].isascii()
    for user in users(datasource, results=20, seed="scripts", nat="UA,RS"):
        assert CYRILLIC.match(user["name"]["first"]) and CYRILLIC.match(user["name"]["last"]), user["name"]


def test_login_hashes_are_of_password_and_salt(datasource):
    for user in users(datasource, results=5, seed="hashes"):
        login = user["login"]
        salted = (login["password"] + login["salt"]).encode()
        assert login["md5"] == hashlib.md5(salted).hexdigest()
        assert login["sha1"] == hashlib.sha1(salted).hexdigest()
        assert login["sha256"] == hashlib.sha256(salted).hexdigest()


def test_same_seed_page_results_nat_is_deterministic(datasource):
    first = get(datasource, results=40, seed="replay", page=3, nat="gb,ir").json()
    again = get(datasource, results=40, seed="replay", page=3, nat="gb,ir").json()
    assert first == again
    other_page = users(datasource, results=40, seed="replay", page=4, nat="gb,ir")
    other_seed = users(datasource, results=40, seed="replay2", page=3, nat="gb,ir")
    uuids = {u["login"]["uuid"] for u in first["results"]}
    assert len(uuids) == 40
    assert uuids.isdisjoint(u["login"]["uuid"] for u in other_page)
    assert uuids.isdisjoint(u["login"]["uuid"] for u in other_seed)


def test_inc_and_exc(datasource):
    assert set(users(datasource, seed="inc", inc="name,nat")[0]) == {"name", "nat"}
    assert set(users(datasource, seed="inc", exc="login,picture")[0]) == TOP_LEVEL - {"login", "picture"}
    # Filtering does not change the users themselves.
    assert users(datasource, seed="inc", inc="name")[0]["name"] == users(datasource, seed="inc")[0]["name"]


def test_5000_users_served_and_5001_refused(datasource):
    body = get(datasource, results=5000, seed="max").json()
    assert len(body["results"]) == 5000
    assert len({u["login"]["uuid"] for u in body["results"]}) == 5000
    assert "error" in get(datasource, results=5001).json()


@pytest.mark.parametrize("params", [{"results": 0}, {"results": "ten"}, {"page": 0}, {"nat": "xx"},
                                    {"format": "csv"}, {"malformed": 2}])
def test_bad_parameters_give_error_body(datasource, params):
    body = get(datasource, **params).json()
    assert set(body) == {"error"} and body["error"]


def test_injected_failures_then_success(datasource):
    seed = f"fail-{uuid.uuid4().hex}"
    params = dict(results=2, seed=seed, fail=500, fail_times=2)
    statuses = [get(datasource, **params).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert get(datasource, **params).json()["results"] == users(datasource, results=2, seed=seed)
    # A different page is a different request: it fails on its own count.
    assert get(datasource, **params, page=2).status_code == 500


def test_fail_page_fails_only_that_page(datasource):
    seed = f"fail-{uuid.uuid4().hex}"
    assert get(datasource, seed=seed, page=1, fail=503, fail_page=2).status_code == 200
    assert get(datasource, seed=seed, page=2, fail=503, fail_page=2).status_code == 503


def test_injected_429_with_retry_after_and_error_body(datasource):
    seed = f"fail-{uuid.uuid4().hex}"
    response = get(datasource, seed=seed, fail=429, retry_after=3)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    body = get(datasource, seed=seed, fail="error").json()
    assert set(body) == {"error"}
    assert get(datasource, seed=seed, fail=503).status_code == 503  # no fail_times: always fails
    assert get(datasource, seed=seed, fail=503).status_code == 503


def test_delay(datasource):
    started = time.perf_counter()
    users(datasource, seed="slow", delay=0.3)
    assert time.perf_counter() - started >= 0.3


def test_malformed_rate(datasource):
    clean = users(datasource, results=200, seed="bad")
    assert users(datasource, results=200, seed="bad", malformed=0) == clean
    dirty = users(datasource, results=200, seed="bad", malformed=0.25)
    assert users(datasource, results=200, seed="bad", malformed=0.25) == dirty  # reproducible
    changed = [i for i, (a, b) in enumerate(zip(clean, dirty)) if a != b]
    assert 20 <= len(changed) <= 80  # about a quarter
    everything = users(datasource, results=50, seed="bad", malformed=1)
    assert all(a != b for a, b in zip(users(datasource, results=50, seed="bad"), everything))


def test_unknown_path_is_404(datasource):
    response = requests.get(datasource.url.replace("/api/", "/nope"), timeout=5)
    assert response.status_code == 404 and "error" in response.json()


def test_cli_serves_and_reports_busy_port():
    port = closed_port()
    cmd = [sys.executable, "-m", "standin.randomuser", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert f"http://127.0.0.1:{port}/api/" in proc.stdout.readline()
        body = requests.get(f"http://127.0.0.1:{port}/api/?results=2&seed=cli&nat=ua", timeout=5).json()
        assert [u["nat"] for u in body["results"]] == ["UA", "UA"]
        busy = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert busy.returncode == 1 and "cannot listen" in busy.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_generate_matches_served_json(datasource):
    served = users(datasource, results=7, seed="same", page=2, nat="fi,mx")
    assert json.loads(json.dumps(generate("same", 2, 7, ("FI", "MX")), ensure_ascii=False)) == served
