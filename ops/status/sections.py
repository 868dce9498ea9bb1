"""The sections that are not Kafka's: schema subjects, Cassandra rows, DAG runs, the streaming job's own state.

Each is a function of the settings returning a dataclass; a section whose
service is down carries `error` (one line saying why) instead of raising, so
one broken service never hides the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry.error import SchemaRegistryError

from core import job_state, names
from core.health import REGISTRY_ERRORS, cassandra_errors, cassandra_reason, cassandra_session, reason, registry_client
from core.schema_registry import is_not_found
from core.settings import Settings
from ops.airflow_api import AirflowApiError, AirflowClient, admin_password
from spark.progress import progress_path, read_progress

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class SubjectInfo:
    name: str
    versions: list[int]
    latest_id: int | None
    compatibility: str | None
    compatibility_source: str  # "subject" or "global"


@dataclass
class SchemaRegistryView:
    url: str
    global_compatibility: str | None = None
    subjects: list[SubjectInfo] = field(default_factory=list)
    error: str | None = None


@dataclass
class RowCount:
    table: str
    rows: int | None = None
    error: str | None = None


@dataclass
class DagRunInfo:
    run_id: str
    state: str
    run_type: str | None
    run_after: str | None
    start_date: str | None
    end_date: str | None


@dataclass
class DagRunsView:
    dag_id: str
    runs: list[DagRunInfo] = field(default_factory=list)
    total: int | None = None
    error: str | None = None


@dataclass
class StreamJob:
    """What the job says of itself: its state file (core.job_state) and its progress file (spark.progress)."""

    state_file: str
    progress_file: str
    state: dict[str, Any] | None = None
    state_line: str | None = None  # job_state.one_line: "waiting for cassandra since ...: ..."
    progress: dict[str, Any] | None = None
    error: str | None = None


# --- Schema Registry -------------------------------------------------------------------------


def schema_subjects(settings: Settings, timeout: float) -> SchemaRegistryView:
    """Subjects with their versions, latest schema id and compatibility (subject level, else global)."""
    view = SchemaRegistryView(settings.schema_registry_url)
    client = registry_client(settings, timeout)
    try:
        view.global_compatibility = client.get_compatibility()
        for subject in sorted(client.get_subjects()):
            if info := _subject_info(client, subject, view.global_compatibility):
                view.subjects.append(info)
    except REGISTRY_ERRORS as exc:
        view.error = reason(exc)
    return view


def _subject_info(client: Any, subject: str, global_level: str | None) -> SubjectInfo | None:
    """One subject's row; None when it was deleted between the listing and this lookup."""
    try:
        versions = client.get_versions(subject)
        latest = client.get_version(subject, "latest")  # "latest" is never served from the client's cache
    except SchemaRegistryError as error:
        if is_not_found(error):
            return None
        raise
    try:
        level, source = client.get_compatibility(subject), "subject"
    except SchemaRegistryError as error:
        if not is_not_found(error):
            raise
        level, source = global_level, "global"  # no subject-level rule: the global one applies
    return SubjectInfo(subject, sorted(versions), latest.schema_id, level, source)


# --- Cassandra ----------------------------------------------------------------------------------


def cassandra_rows(settings: Settings, timeout: float) -> RowCount:
    """SELECT count(*) of the pipeline's table: a full scan, fine for demo sizes, bounded by `timeout`."""
    keyspace, table = settings.cassandra_keyspace, settings.cassandra_table
    view = RowCount(f"{keyspace}.{table}")
    if not (_IDENTIFIER.match(keyspace) and _IDENTIFIER.match(table)):
        view.error = f"not a CQL identifier: {keyspace}.{table}"
        return view
    cluster = None
    try:
        cluster, session = cassandra_session(settings, timeout)
        view.rows = session.execute(f"SELECT count(*) FROM {keyspace}.{table}").one()[0]
    except cassandra_errors() as exc:
        view.error = cassandra_reason(exc)
        missing = re.search(r'message="([^"]*does not exist[^"]*)"', str(exc))
        if missing:  # the node is fine; the schema step has not run
            view.error = f"{missing.group(1)}; create it with `make cassandra-schema`"
    finally:
        if cluster is not None:
            cluster.shutdown()
    return view


# --- Airflow -------------------------------------------------------------------------------------


def airflow_password(settings: Settings) -> str | None:
    """The admin password the demo uses too (ops.airflow_api), or None when there is none to be had."""
    try:
        return admin_password(settings)
    except AirflowApiError:
        return None


def dag_runs(settings: Settings, timeout: float, dag_id: str = names.DAG_ID, limit: int = 5) -> DagRunsView:
    """The newest runs of the DAG through Airflow's REST API v2 (ops.airflow_api logs in)."""
    view = DagRunsView(dag_id)
    if airflow_password(settings) is None:
        view.error = ("no Airflow password: set AIRFLOW_ADMIN_PASSWORD, or start Airflow with the launcher "
                      f"(it writes {Path(settings.stack_home) / 'airflow'}/simple_auth_manager_passwords.json.generated)")
        return view
    try:
        body = AirflowClient(settings, timeout).dag_runs(dag_id, limit)
    except AirflowApiError as exc:
        view.error = _airflow_error(exc, settings, dag_id)
        return view
    except (ValueError, KeyError) as exc:
        view.error = reason(exc)
        return view
    view.total = body.get("total_entries")
    view.runs = [_run_info(run) for run in body.get("dag_runs", [])]
    return view


def _airflow_error(exc: AirflowApiError, settings: Settings, dag_id: str) -> str:
    if exc.status_code == 401:
        return f"Airflow rejected the password of user {settings.airflow_admin_user!r}"
    if exc.status_code == 404:
        return f"DAG {dag_id} not found (not parsed yet?)"
    return reason(exc.__cause__ or exc)  # no HTTP answer: the transport error underneath says why in fewer words


def _run_info(run: dict[str, Any]) -> DagRunInfo:
    return DagRunInfo(
        run_id=run.get("dag_run_id") or run.get("run_id", "?"),
        state=run.get("state", "?"),
        run_type=run.get("run_type"),
        run_after=run.get("run_after") or run.get("logical_date"),
        start_date=run.get("start_date"),
        end_date=run.get("end_date"),
    )


# --- The streaming job ---------------------------------------------------------------------------


def stream_job(settings: Settings) -> StreamJob:
    """The job's state line and last progress, from the two small JSON files it keeps next to its checkpoint."""
    state_file = job_state.job_state_path(settings.spark_checkpoint_dir)
    view = StreamJob(str(state_file), str(progress_path(settings.spark_checkpoint_dir)))
    try:
        view.state = job_state.read_job_state(state_file)
        view.progress = read_progress(Path(view.progress_file))
    except (OSError, ValueError) as exc:  # ValueError: a file that is not JSON (the writes are atomic, so: corrupt)
        view.error = reason(exc)
        return view
    if view.state is not None:
        view.state_line = job_state.one_line(view.state)
    elif view.progress is None:
        view.error = "the streaming job has not run with this checkpoint yet (`make stream` starts it)"
    return view
