"""The main job: the whole pipeline end to end on the embedded stack, in one command.

Starts what is not running (Kafka, the registry, Cassandra, the local data
source unless DATASOURCE_URL points elsewhere), says what earlier runs left
on the stack, applies the Cassandra schema, registers the Avro schemas,
starts Airflow and the Spark streaming job side by side, triggers the `user_stream` DAG
through Airflow's REST API (the scheduler runs it, as it would from the UI),
waits until every user the DAG published is in Cassandra, and prints a
summary. The stack stays up for exploring; `make down` stops it.

Every wait treats a slow or refused answer as "not yet" and says so once
(ops/waits.py); only a step's deadline fails it. A streaming job that stops
is reported with its own reason in one line (ops/job_watch.py).

Usage:
    python -m ops.demo [--users 1000] [--batch-size 500] [--nationalities gb,ir] [--seed userstream]
    make demo
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar
from urllib.parse import urlparse

from core.job_state import RUNNING
from core.settings import Settings, load_settings
from ops.airflow_api import FINISHED, AirflowApiError, AirflowClient, AirflowUnavailable
from ops.job_watch import RESTART_NOTE, JobReport, RepeatedFailures, job_report
from ops.leftovers import describe, find_leftovers, table_rows
from ops.waits import Deadline, NotYet, SlowNotice, call_until, short
from stack import launcher
from stack.layout import Layout
from stack.services import CORE, SERVICES, StackError, airflow_home

T = TypeVar("T")
DAG_ID = "user_stream"
DAG_PARSE_SECONDS = 180.0  # the dag-processor parses dags/ on its own schedule; a busy machine makes it slow


class DemoError(RuntimeError):
    """A step failed; the message names the component, what to do and where its log is."""


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run_command(component: str, command: list[str]) -> None:
    """Run one of the project's own commands, its output shown as it comes."""
    print("$ " + " ".join(command), flush=True)
    if subprocess.call(command) != 0:
        raise DemoError(f"{component}: `{' '.join(command)}` failed (its output is above)")


def wait(check: Callable[[], T], what: str, component: str, then: str, deadline: Deadline,
         transient: Callable[[BaseException], bool] = lambda error: False, notice: SlowNotice | None = None) -> T:
    """Poll `check` (it raises NotYet until done) under the one retry policy.

    The deadline fails naming `component`, the last answer and `then` (what to do, which log to read).
    """
    return call_until(
        check, deadline, transient=transient, notice=notice,
        on_timeout=lambda error: DemoError(
            f"{component}: gave up waiting for {what} after {deadline.seconds:.0f}s (last: {getattr(error, 'reason', None) or short(error, 400)}); {then}"),
    )


def see(layout: Layout, service: str) -> str:
    return f"see {layout.log(service)}"


def airflow_gone(error: BaseException) -> bool:
    """The client already retried until the step's deadline: let the step's own timeout message say so."""
    return isinstance(error, AirflowUnavailable)


# --- Airflow ----------------------------------------------------------------------------------

def wait_for_dag(client: AirflowClient, layout: Layout) -> None:
    """The dag-processor parses dags/ on its own schedule: wait until the api-server knows the DAG."""

    def check() -> None:
        try:
            dag = client.dag(DAG_ID)
        except AirflowApiError as exc:
            if exc.status_code == 404:
                raise NotYet(f"DAG {DAG_ID} not parsed yet") from exc
            raise
        if dag.get("is_paused"):
            client.unpause(DAG_ID)

    wait(check, f"the dag-processor to parse DAG {DAG_ID}", "airflow", see(layout, "airflow"), client.deadline, airflow_gone)


def follow_run(client: AirflowClient, run_id: str, layout: Layout) -> dict[str, str | None]:
    """Print each task's state as it changes until the run finishes; a failed run is an error."""
    seen: dict[str, str | None] = {}

    def check() -> str:
        states = client.task_states(DAG_ID, run_id)
        for task, state in states.items():
            if seen.get(task) != state:
                print(f"    task {task:<24} {state}", flush=True)
        seen.update(states)
        run_state = client.run(DAG_ID, run_id)["state"]
        if run_state not in FINISHED:
            raise NotYet(f"run {run_id} is {run_state}")
        return run_state

    run_state = wait(check, f"run {run_id} to finish", "airflow", see(layout, "airflow"), client.deadline, airflow_gone)
    if run_state != "success":
        failed = [task for task, state in seen.items() if state not in ("success", "skipped")]
        logs = airflow_home(layout) / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
        raise DemoError(f"airflow: run {run_id} {run_state} (tasks not successful: {', '.join(failed)}); task logs under {logs}")
    return seen


def run_conf(settings: Settings, args: argparse.Namespace) -> dict:
    """The run's params; the data source goes along so the DAG reads the one this command was given.

    A URL with credentials in it stays out: a run's conf is stored and shown in
    the UI, so the DAG then reads DATASOURCE_URL from Airflow's own environment.
    """
    conf = {"users": args.users, "batch_size": args.batch_size, "nationalities": args.nationalities, "seed": args.seed}
    if "@" not in urlparse(settings.datasource_url).netloc:
        conf["datasource_url"] = settings.datasource_url
    return conf


def check_datasource(settings: Settings, seconds: float = 60.0) -> None:
    """An external data source must serve a user before the DAG is sent to it (the launcher did not start it)."""
    from core.health import probe_datasource

    def check() -> None:
        answer = probe_datasource(settings, timeout=10)
        if not answer.up:
            raise NotYet(answer.detail)

    wait(check, f"a user from {answer_url(settings)}", "datasource", "check DATASOURCE_URL, or unset it to use the local stand-in",
         Deadline(seconds))
    print(f"    data source {answer_url(settings)} serves users (external: not started or stopped by the launcher)", flush=True)


def answer_url(settings: Settings) -> str:
    """DATASOURCE_URL without credentials or query, fit for a terminal."""
    url = urlparse(settings.datasource_url)
    return f"{url.scheme}://{url.hostname}{':' + str(url.port) if url.port else ''}{url.path}"


# --- Cassandra and the streaming job -------------------------------------------------------------

def cassandra_transient(error: BaseException) -> bool:
    """A node that is slow, busy or briefly unreachable: ask again (imported late: the driver is heavy)."""
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    from core.cassandra_schema import CassandraUnavailable

    return isinstance(error, (OperationTimedOut, ReadTimeout, Unavailable, NoHostAvailable, CassandraUnavailable))


class RowCounter:
    """Counts this run's rows over one Cassandra session, connecting (again) when needed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cluster = self.session = None

    def since(self, moment: datetime) -> int:
        """Rows the producer ingested at or after `moment`: this run's users, even if an earlier run wrote them too."""
        if self.session is None:
            from core.cassandra_schema import cassandra_cluster

            cluster = cassandra_cluster(self.settings)
            try:
                self.session = cluster.connect()
            except BaseException:
                cluster.shutdown()
                raise
            self.cluster = cluster
        query = (f"SELECT count(*) FROM {self.settings.cassandra_keyspace}.{self.settings.cassandra_table} "
                 "WHERE ingested_at >= %s ALLOW FILTERING")
        return self.session.execute(query, (moment,), timeout=30).one()[0]

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()


def check_job(settings: Settings, layout: Layout) -> None:
    """Before triggering: a job that already stopped would only make the demo wait for nothing."""
    report = job_report(settings, layout, launcher.read_pid(layout, "stream"))
    if report.stopped:
        raise DemoError(f"stream: {report.line}")
    if report.state != RUNNING:
        print(f"    stream: {report.line}", flush=True)


def wait_for_rows(settings: Settings, layout: Layout, expected: int, since: datetime, deadline: Deadline) -> int:
    """Poll Cassandra until the streaming job has written every published user, showing progress and the job's state."""
    counter = RowCounter(settings)
    shown = {"count": -1, "job": "running"}
    repeated = RepeatedFailures()

    def check() -> int:
        report = job_report(settings, layout, launcher.read_pid(layout, "stream"))
        if repeated.crash_loop(report):
            report = JobReport("stopped", f"it failed {len(repeated.runs)} times in a row with the same error, restarts "
                                          f"do not help: {report.line.removesuffix(RESTART_NOTE)}")
        if report.line != shown["job"] and report.state != RUNNING:
            print(f"    stream: {report.line}", flush=True)
        shown["job"] = report.line if report.state != RUNNING else "running"
        try:
            count = counter.since(since)
        except Exception as exc:
            if not cassandra_transient(exc) or not report.stopped:
                raise
            count = None  # the job's reason matters more than Cassandra's slowness
        if count is not None and count != shown["count"]:
            print(f"    cassandra: {count:>6} / {expected} users of this run", flush=True)
            shown["count"] = count
        if count is not None and count >= expected:
            return count
        if report.stopped:
            written = "?" if count is None else count
            raise DemoError(f"stream: the Spark job stopped with {written}/{expected} rows of this run written: {report.line}")
        job = "" if report.state == RUNNING else f"; the job is {report.line}"
        raise NotYet(f"{count}/{expected} rows of this run in Cassandra{job}")

    try:
        return wait(check, "every published user to reach Cassandra", "stream", see(layout, "stream"), deadline,
                    cassandra_transient, SlowNotice("Cassandra"))
    finally:
        counter.close()


# --- The command --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings()
    layout = Layout(settings.stack_home)
    began = time.monotonic()

    step("Starting the embedded stack (Kafka, Schema Registry, Cassandra, data source)")
    launcher.up(settings, layout, list(CORE))

    if SERVICES["datasource"].elsewhere(settings):
        check_datasource(settings)

    step("Looking for data earlier runs left")
    print(describe(find_leftovers(settings)), flush=True)

    step("Applying the Cassandra schema")
    run_command("cassandra", [sys.executable, "-m", "core.cassandra_schema"])

    step("Registering the Avro schemas")
    run_command("registry", [sys.executable, "-m", "producer.register"])

    # Together: each starts while the other does (the launcher starts what it can at once), and neither
    # needs the other; the job needs the table and the schemas above.
    step("Starting Airflow and the Spark streaming job (the job creates the topics if missing)")
    launcher.up(settings, layout, ["airflow", "stream"])
    check_job(settings, layout)

    step(f"Triggering DAG {DAG_ID} through Airflow's REST API ({args.users} users from {answer_url(settings)})")
    client = AirflowClient(settings, deadline=Deadline(DAG_PARSE_SECONDS))
    wait_for_dag(client, layout)
    # Cassandra keeps milliseconds; a second of slack covers clock rounding between processes.
    triggered_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    triggered = time.monotonic()
    conf = run_conf(settings, args)
    run_id = wait(lambda: client.trigger(DAG_ID, conf), f"Airflow to accept a run of {DAG_ID}", "airflow",
                  see(layout, "airflow"), client.deadline, airflow_gone)
    print(f"    run {run_id}  conf {conf}", flush=True)
    client = client.until(Deadline(args.timeout))
    follow_run(client, run_id, layout)
    counts = wait(lambda: client.xcom(DAG_ID, run_id, "report"), f"run {run_id}'s report", "airflow",
                  see(layout, "airflow"), client.deadline, airflow_gone)

    step("Waiting for the streaming job to land every published user in Cassandra")
    landed = wait_for_rows(settings, layout, counts["published"], triggered_at, Deadline(args.timeout))
    end_to_end = time.monotonic() - triggered

    print_summary(settings, layout, counts, landed, end_to_end, time.monotonic() - began)
    return 0


def print_summary(settings: Settings, layout: Layout, counts: dict, landed: int, end_to_end: float, total: float) -> None:
    password_file = airflow_home(layout) / "simple_auth_manager_passwords.json.generated"
    rows = table_rows(settings)
    print(
        f"""
==> Done
    users fetched        {counts['fetched']}
    users published      {counts['published']}   (schema id {counts.get('schema_id', '?')})
    dead-lettered        {counts['dead_lettered']}   (topic {settings.dead_letter_topic})
    rows in Cassandra    {landed} from this run, {'?' if rows is None else rows} in {settings.cassandra_keyspace}.{settings.cassandra_table}
    end-to-end time      {end_to_end:.1f}s from trigger to the last row ({total:.0f}s including start-up)

Where to look next:
    Airflow UI           {settings.airflow_url}  (user {settings.airflow_admin_user}, password in {password_file})
    Schema Registry      {settings.schema_registry_url}/subjects
    Pipeline status      make status
    Web monitor          {settings.monitor_url}  (charts, lag, dead letters, schema diffs; /metrics for Prometheus)
    Logs                 {layout.logs}/
    Stop everything      make down
""",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000, help="users to fetch and publish (default 1000)")
    parser.add_argument("--batch-size", type=int, default=500, help="users per API request (default 500, max 5000)")
    parser.add_argument("--nationalities", default="", help='comma list such as "gb,ir,ua"; empty means all')
    parser.add_argument("--seed", default="userstream", help="API seed; the same seed fetches the same users")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the DAG run and for the rows")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (DemoError, StackError, AirflowApiError) as failure:
        print(f"\ndemo: FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
