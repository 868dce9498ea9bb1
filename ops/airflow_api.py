"""A small client for the Airflow 3 REST API (v2): log in, trigger a DAG run, follow it.

Triggering through the api-server is the real trigger path: the scheduler
picks the run up exactly as it would one started from the UI. Only what the
demo and the status view need is here.

Every call follows one retry policy (ops.waits, tenacity): a timeout, a
refused connection, a 429 or a 5xx is retried with backoff until the
client's deadline, saying "Airflow slow to answer, retrying…" once per
stretch; a 401 logs in again once (the token expired); any other 4xx is
final at once. Without a deadline (the status view's probe) a call is tried
once.

Why requests + tenacity and not `apache-airflow-client` with urllib3's
Retry: urllib3 counts attempts where the demo needs a time budget per step
(a paused api-server must be waited out, however many timeouts that takes),
it does not retry a POST after a read timeout, and the generated client
takes a fixed token, so the re-login on 401 and the idempotent trigger
(our own run id, a 409 meaning our earlier attempt got through) would have
to be wrapped around it anyway. Six endpoints are less code than that wrapping.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import requests

from core.health import reason
from core.settings import Settings
from ops.waits import Deadline, SlowNotice, call_until, short

FINISHED = ("success", "failed")
# What "no answer" looks like to requests; a malformed URL or too many redirects is not worth a retry.
NO_ANSWER = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class AirflowApiError(RuntimeError):
    """The api-server refused or failed a call; the message says which and what it answered."""

    def __init__(self, message: str, status_code: int | None = None, transient: bool = False, reason: str | None = None):
        super().__init__(message)
        self.status_code = status_code  # None when there was no HTTP answer at all
        self.transient = transient  # no answer, 429 or 5xx: worth asking again
        self.reason = reason or message  # short enough for a "slow to answer" line


class AirflowUnavailable(AirflowApiError):
    """Airflow gave no usable answer before the deadline (timeouts, refused connections, 5xx)."""


def admin_password(settings: Settings) -> str:
    """AIRFLOW_ADMIN_PASSWORD, else the one `airflow standalone` generated into the stack's Airflow home."""
    if settings.airflow_admin_password:
        return settings.airflow_admin_password.get_secret_value()
    generated = Path(settings.stack_home) / "airflow" / "simple_auth_manager_passwords.json.generated"
    if generated.is_file():
        password = json.loads(generated.read_text()).get(settings.airflow_admin_user)
        if password:
            return password
    raise AirflowApiError(
        f"no Airflow password: set AIRFLOW_ADMIN_PASSWORD, or start Airflow with `python -m stack up airflow` (it writes {generated})"
    )


def endpoint(method: str, path: str) -> str:
    """`GET …/taskInstances` for a long path: enough to see which call, short enough for one line."""
    return f"{method} {path}" if len(path) <= 48 else f"{method} …/{path.rstrip('/').rsplit('/', 1)[-1]}"


def new_run_id() -> str:
    """A run id of our own, so a trigger whose answer was lost can be sent again without a second run."""
    return f"manual__{datetime.now(timezone.utc).isoformat(timespec='seconds')}__{uuid.uuid4().hex[:8]}"


@dataclass
class AirflowClient:
    settings: Settings
    timeout: float = 10.0  # per request
    deadline: Deadline | None = None  # retry transient failures until then; None: one attempt
    notice: SlowNotice = field(default_factory=lambda: SlowNotice("Airflow"))
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.base = self.settings.airflow_url.rstrip("/")

    def until(self, deadline: Deadline) -> AirflowClient:
        """The same client (session, token, notice) retrying until another step's deadline."""
        return replace(self, deadline=deadline)

    # --- transport ----------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs) -> dict:
        """One API call under the retry policy; logs in first, and again once on a 401."""

        def attempt() -> dict:
            if "Authorization" not in self.session.headers:
                self._login()
            try:
                return self._send(method, path, **kwargs)
            except AirflowApiError as exc:
                if exc.status_code != 401:
                    raise
                self._login()  # the token expired: once, then a 401 is final
                return self._send(method, path, **kwargs)

        return call_until(
            attempt,
            self.deadline,
            transient=lambda error: isinstance(error, AirflowApiError) and error.transient,
            notice=self.notice,
            on_timeout=lambda error: self._unavailable(method, path, error),
        )

    def _unavailable(self, method: str, path: str, error: BaseException) -> AirflowUnavailable:
        waited = f" within {self.deadline.seconds:.0f}s" if self.deadline and self.deadline.seconds else ""
        status = getattr(error, "status_code", None)
        return AirflowUnavailable(f"Airflow at {self.base} gave no answer to {method} {path}{waited} (last: {short(error, 300)})", status,
                                  reason=getattr(error, "reason", None))

    def _login(self) -> None:
        self.session.headers.pop("Authorization", None)
        body = {"username": self.settings.airflow_admin_user, "password": admin_password(self.settings)}
        token = self._send("POST", "/auth/token", json=body)["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _send(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AirflowApiError(f"Airflow at {self.base} did not answer {method} {path}: {exc}",
                                  transient=isinstance(exc, NO_ANSWER), reason=f"{endpoint(method, path)}: {reason(exc)}") from exc
        if not response.ok:
            code = response.status_code
            raise AirflowApiError(f"Airflow answered {code} to {method} {path}: {response.text[:300]}", code,
                                  transient=code == 429 or code >= 500, reason=f"{endpoint(method, path)}: answered {code}")
        return response.json()

    # --- endpoints ------------------------------------------------------------

    def dag(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{quote(dag_id)}")

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{quote(dag_id)}", json={"is_paused": False})

    def dag_runs(self, dag_id: str, limit: int) -> dict:
        """The newest runs first. By run_after: runs triggered with `logical_date: null` have no logical date."""
        return self._call("GET", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", params={"order_by": "-run_after", "limit": limit})

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> str:
        """Create a manual run now; `logical_date: null` is what Airflow 3 asks for an ad-hoc run.

        The run id is ours, so sending the trigger again after a lost answer is
        safe: a 409 for that id means the earlier attempt created the run.
        """
        run_id = run_id or new_run_id()
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        try:
            return self._call("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns", json=body)["dag_run_id"]
        except AirflowApiError as exc:
            if exc.status_code != 409:
                raise
            return self.run(dag_id, run_id)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        body = self._call("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        body = self._call(
            "GET",
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id)}/xcomEntries/return_value",
            params={"deserialize": "true"},
        )
        return body["value"]
