"""A small client for the Airflow 3 REST API (v2): log in, trigger a DAG run, follow it.

Triggering through the api-server is the real trigger path: the scheduler
picks the run up exactly as it would one started from the UI. Only what the
demo and the tests need is here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from core.settings import Settings

FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    """The api-server refused or failed a call; the message says which and what it answered."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code  # None when there was no HTTP answer at all


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


@dataclass
class AirflowClient:
    settings: Settings
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.base = self.settings.airflow_url.rstrip("/")
        self.session = requests.Session()
        token = self._call("POST", "/auth/token", json={"username": self.settings.airflow_admin_user, "password": admin_password(self.settings)})
        self.session.headers["Authorization"] = f"Bearer {token['access_token']}"

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AirflowApiError(f"Airflow at {self.base} did not answer {method} {path}: {exc}") from exc
        if not response.ok:
            raise AirflowApiError(f"Airflow answered {response.status_code} to {method} {path}: {response.text[:300]}", response.status_code)
        return response.json()

    def dag(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{quote(dag_id)}")

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{quote(dag_id)}", json={"is_paused": False})

    def dag_runs(self, dag_id: str, limit: int) -> dict:
        """The newest runs first. By run_after: runs triggered with `logical_date: null` have no logical date."""
        return self._call("GET", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", params={"order_by": "-run_after", "limit": limit})

    def trigger(self, dag_id: str, conf: dict) -> str:
        """Create a manual run now; `logical_date: null` is what Airflow 3 asks for an ad-hoc run."""
        run = self._call("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        body = self._call("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        body = self._call(
            "GET",
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}/xcomEntries/return_value",
            params={"deserialize": "true"},
        )
        return body["value"]
