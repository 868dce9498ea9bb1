"""The Airflow client's retry policy against a fake api-server (pytest-httpserver).

Slow or failing answers (a read timeout, a refused connection, 429, 5xx) are
retried until the client's deadline and announced once per stretch; a 401
logs in again once; any other 4xx is final at once; a trigger sent again
after a lost answer does not create a second run.
"""

from __future__ import annotations

import json
import time

import pytest
from werkzeug import Request, Response

from core.settings import Settings
from ops.airflow_api import AirflowApiError, AirflowClient, AirflowUnavailable
from ops.waits import Deadline, SlowNotice
from tests.ports import closed_port

DAG = "/api/v2/dags/user_stream"


@pytest.fixture
def airflow(httpserver):
    """A fake api-server that hands out tokens; each test adds the endpoints it needs."""
    httpserver.expect_request("/auth/token", method="POST").respond_with_json({"access_token": "token-1"})
    return httpserver


def make_client(url: str, seconds: float | None, lines: list[str], timeout: float = 0.5) -> AirflowClient:
    settings = Settings(airflow_url=url, airflow_admin_password="not-a-real-password")
    notice = SlowNotice("Airflow", say=lines.append)
    return AirflowClient(settings, timeout=timeout, deadline=Deadline(seconds) if seconds is not None else None, notice=notice)


def requests_to(server, path: str) -> int:
    return sum(1 for request, _ in server.log if request.path == path)


def answers(*responses):
    """A handler that gives these answers in turn (a number means: sleep that long, then answer 200)."""
    queue = list(responses)

    def handler(request: Request) -> Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            time.sleep(answer)
            return Response(json.dumps({"dag_id": "user_stream", "is_paused": False}), content_type="application/json")
        return answer

    return handler


def ok(body: dict) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def status(code: int) -> Response:
    return Response(json.dumps({"detail": f"answer {code}"}), status=code, content_type="application/json")


def test_a_slow_answer_is_waited_out_and_announced_once(airflow):
    airflow.expect_request(DAG).respond_with_handler(answers(1.5, 1.5, 0))
    lines: list[str] = []
    client = make_client(airflow.url_for("/"), 30, lines, timeout=0.5)
    assert client.dag("user_stream")["dag_id"] == "user_stream"
    assert requests_to(airflow, DAG) >= 2
    slow = [line for line in lines if "slow to answer" in line]
    assert len(slow) == 1, lines
    assert slow[0] == "    Airflow slow to answer, retrying… (GET /api/v2/dags/user_stream: no answer before the timeout)", lines
    assert any("answered again" in line for line in lines), lines


@pytest.mark.parametrize("code", [429, 500, 502, 503])
def test_a_server_error_is_retried_until_it_answers(airflow, code):
    airflow.expect_request(DAG).respond_with_handler(answers(status(code), status(code), ok({"dag_id": "user_stream"})))
    lines: list[str] = []
    assert make_client(airflow.url_for("/"), 30, lines).dag("user_stream") == {"dag_id": "user_stream"}
    assert requests_to(airflow, DAG) == 3
    assert len([line for line in lines if "slow to answer" in line]) == 1, lines


@pytest.mark.parametrize("code", [400, 403, 404, 422])
def test_a_client_error_is_final_at_once(airflow, code):
    airflow.expect_request(DAG).respond_with_handler(answers(status(code)))
    lines: list[str] = []
    with pytest.raises(AirflowApiError, match=rf"Airflow answered {code} to GET {DAG}") as raised:
        make_client(airflow.url_for("/"), 30, lines).dag("user_stream")
    assert raised.value.status_code == code and not isinstance(raised.value, AirflowUnavailable)
    assert requests_to(airflow, DAG) == 1
    assert lines == []


def test_an_expired_token_logs_in_again_once(airflow):
    airflow.expect_request(DAG).respond_with_handler(answers(status(401), ok({"dag_id": "user_stream"})))
    assert make_client(airflow.url_for("/"), 30, []).dag("user_stream") == {"dag_id": "user_stream"}
    assert requests_to(airflow, "/auth/token") == 2  # the first login, then one more after the 401
    assert requests_to(airflow, DAG) == 2


def test_a_second_401_is_final(airflow):
    airflow.expect_request(DAG).respond_with_handler(answers(status(401)))
    with pytest.raises(AirflowApiError, match="answered 401") as raised:
        make_client(airflow.url_for("/"), 30, []).dag("user_stream")
    assert raised.value.status_code == 401
    assert requests_to(airflow, "/auth/token") == 2 and requests_to(airflow, DAG) == 2


def test_the_deadline_ends_the_wait_naming_the_call_and_the_last_answer(airflow):
    airflow.expect_request(DAG).respond_with_handler(answers(status(503)))
    lines: list[str] = []
    began = time.monotonic()
    with pytest.raises(AirflowUnavailable, match=rf"gave no answer to GET {DAG} within 3s \(last: Airflow answered 503"):
        make_client(airflow.url_for("/"), 3, lines).dag("user_stream")
    assert 3 <= time.monotonic() - began < 8
    assert requests_to(airflow, DAG) >= 3
    assert len([line for line in lines if "slow to answer" in line]) == 1, lines


def test_a_refused_connection_is_retried_until_the_deadline():
    lines: list[str] = []
    client = make_client(f"http://127.0.0.1:{closed_port()}", 2, lines)
    with pytest.raises(AirflowUnavailable, match=r"within 2s \(last: Airflow at .* did not answer POST /auth/token"):
        client.dag("user_stream")
    assert len(lines) == 1 and "slow to answer" in lines[0], lines


def test_without_a_deadline_a_call_is_tried_once(airflow):
    """What the status view's probe wants: an answer now, or why not."""
    airflow.expect_request(DAG).respond_with_handler(answers(status(503)))
    with pytest.raises(AirflowUnavailable, match="answered 503"):
        make_client(airflow.url_for("/"), None, []).dag("user_stream")
    assert requests_to(airflow, DAG) == 1


def test_a_trigger_sent_again_after_a_lost_answer_creates_one_run(airflow):
    """The first POST creates the run but its answer comes too late; the retry's 409 means: already there."""
    created: list[dict] = []

    def trigger(request: Request) -> Response:
        body = request.get_json()
        if any(run["dag_run_id"] == body["dag_run_id"] for run in created):
            return status(409)
        created.append(body)
        time.sleep(1.5)  # longer than the client's timeout: the answer is lost
        return ok({"dag_run_id": body["dag_run_id"]})

    airflow.expect_request(f"{DAG}/dagRuns", method="POST").respond_with_handler(trigger)
    airflow.expect_request(f"{DAG}/dagRuns/run-1").respond_with_json({"dag_run_id": "run-1", "state": "queued"})
    run_id = make_client(airflow.url_for("/"), 30, []).trigger("user_stream", {"users": 5}, run_id="run-1")
    assert run_id == "run-1"
    assert len(created) == 1 and created[0]["conf"] == {"users": 5} and created[0]["logical_date"] is None
