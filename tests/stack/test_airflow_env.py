"""Airflow moved with AIRFLOW_URL must send its tasks to its own api-server, not to whatever holds port 8080."""

from __future__ import annotations

from core.settings import Settings
from stack.layout import Layout
from stack.services import _airflow_env


def test_tasks_report_to_the_api_server_airflow_url_names(tmp_path):
    env = _airflow_env(Settings(airflow_url="http://localhost:18080/"), Layout(tmp_path))
    assert env["AIRFLOW__API__PORT"] == "18080"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:18080/execution/"
