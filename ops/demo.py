"""The main job: the whole pipeline end to end on the embedded stack, in one command.

Starts what is not running (Kafka, the registry, Cassandra, the local data
source, Airflow), applies the Cassandra schema, registers the Avro schemas,
starts the Spark streaming job, triggers the `user_stream` DAG through
Airflow's REST API (the scheduler runs it, as it would from the UI), waits
until every user the DAG published is in Cassandra, and prints a summary.
The stack stays up for exploring; `make down` stops it.

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

from ops.airflow_api import FINISHED, AirflowApiError, AirflowClient
from core.settings import Settings, load_settings
from stack import launcher
from stack.layout import Layout
from stack.services import CORE, StackError, airflow_home

DAG_ID = "user_stream"
POLL_SECONDS = 2.0


class DemoError(RuntimeError):
    """A step failed; the message names the component and where its log is."""


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run_command(component: str, command: list[str]) -> None:
    """Run one of the project's own commands, its output shown as it comes."""
    print("$ " + " ".join(command), flush=True)
    if subprocess.call(command) != 0:
        raise DemoError(f"{component}: `{' '.join(command)}` failed (its output is above)")


def wait_for_dag(client: AirflowClient, timeout: float) -> None:
    """The dag-processor parses dags/ on its own schedule: wait until it has seen the DAG."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            dag = client.dag(DAG_ID)
            if dag.get("is_paused"):
                client.unpause(DAG_ID)
            return
        except AirflowApiError as exc:
            if time.monotonic() > deadline:
                raise DemoError(f"airflow: DAG {DAG_ID} was not parsed within {timeout:.0f}s ({exc}); see the dag-processor in .stack/logs/airflow.log") from exc
        time.sleep(POLL_SECONDS)


def follow_run(client: AirflowClient, run_id: str, layout: Layout, timeout: float) -> dict[str, str | None]:
    """Print each task's state as it changes until the run finishes; a failed run is an error."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    while True:
        states = client.task_states(DAG_ID, run_id)
        for task, state in states.items():
            if seen.get(task) != state:
                print(f"    task {task:<24} {state}", flush=True)
        seen = states
        run_state = client.run(DAG_ID, run_id)["state"]
        if run_state in FINISHED:
            break
        if time.monotonic() > deadline:
            raise DemoError(f"airflow: run {run_id} still {run_state} after {timeout:.0f}s; see .stack/logs/airflow.log")
        time.sleep(POLL_SECONDS)
    if run_state != "success":
        failed = [task for task, state in seen.items() if state not in ("success", "skipped")]
        logs = airflow_home(layout) / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
        raise DemoError(f"airflow: run {run_id} {run_state} (tasks not successful: {', '.join(failed)}); task logs under {logs}")
    return seen


def rows_since(settings: Settings, session, since: datetime) -> int:
    """Rows the producer ingested at or after `since`: this run's users, even if an earlier run wrote them too."""
    query = (
        f"SELECT count(*) FROM {settings.cassandra_keyspace}.{settings.cassandra_table} "
        "WHERE ingested_at >= %s ALLOW FILTERING"
    )
    return session.execute(query, (since,), timeout=30).one()[0]


def wait_for_rows(settings: Settings, layout: Layout, expected: int, since: datetime, timeout: float) -> int:
    """Poll Cassandra until the streaming job has written every published user, showing progress."""
    from core.cassandra_schema import connect

    deadline = time.monotonic() + timeout
    last = -1
    with connect(settings) as session:
        while True:
            count = rows_since(settings, session, since)
            if count != last:
                print(f"    cassandra: {count:>6} / {expected} users of this run", flush=True)
                last = count
            if count >= expected:
                return count
            if launcher.read_pid(layout, "stream") is None:
                raise DemoError(f"stream: the Spark job exited with {count}/{expected} rows written; see {layout.log('stream')}")
            if time.monotonic() > deadline:
                raise DemoError(f"stream: only {count}/{expected} rows after {timeout:.0f}s; see {layout.log('stream')}")
            time.sleep(POLL_SECONDS)


def total_rows(settings: Settings) -> int:
    from core.cassandra_schema import connect

    with connect(settings) as session:
        return session.execute(f"SELECT count(*) FROM {settings.cassandra_keyspace}.{settings.cassandra_table}", timeout=30).one()[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings()
    layout = Layout(settings.stack_home)
    began = time.monotonic()

    step("Starting the embedded stack (Kafka, Schema Registry, Cassandra, data source, Airflow)")
    launcher.up(settings, layout, [*CORE, "airflow"])

    step("Applying the Cassandra schema")
    run_command("cassandra", [sys.executable, "-m", "core.cassandra_schema"])

    step("Registering the Avro schemas")
    run_command("registry", [sys.executable, "-m", "producer.register"])

    step("Starting the Spark streaming job (it creates the topics if missing)")
    launcher.up(settings, layout, ["stream"])

    step(f"Triggering DAG {DAG_ID} through Airflow's REST API ({args.users} users)")
    client = AirflowClient(settings)
    wait_for_dag(client, timeout=120)
    # Cassandra keeps milliseconds; a second of slack covers clock rounding between processes.
    triggered_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    triggered = time.monotonic()
    conf = {"users": args.users, "batch_size": args.batch_size, "nationalities": args.nationalities, "seed": args.seed}
    run_id = client.trigger(DAG_ID, conf)
    print(f"    run {run_id}  conf {conf}")
    follow_run(client, run_id, layout, timeout=args.timeout)
    counts = client.xcom(DAG_ID, run_id, "report")

    step("Waiting for the streaming job to land every published user in Cassandra")
    landed = wait_for_rows(settings, layout, counts["published"], triggered_at, timeout=args.timeout)
    end_to_end = time.monotonic() - triggered

    print_summary(settings, layout, counts, landed, end_to_end, time.monotonic() - began)
    return 0


def print_summary(settings: Settings, layout: Layout, counts: dict, landed: int, end_to_end: float, total: float) -> None:
    password_file = airflow_home(layout) / "simple_auth_manager_passwords.json.generated"
    print(
        f"""
==> Done
    users fetched        {counts['fetched']}
    users published      {counts['published']}   (schema id {counts.get('schema_id', '?')})
    dead-lettered        {counts['dead_lettered']}   (topic {settings.dead_letter_topic})
    rows in Cassandra    {landed} from this run, {total_rows(settings)} in {settings.cassandra_keyspace}.{settings.cassandra_table}
    end-to-end time      {end_to_end:.1f}s from trigger to the last row ({total:.0f}s including start-up)

Where to look next:
    Airflow UI           {settings.airflow_url}  (user {settings.airflow_admin_user}, password in {password_file})
    Schema Registry      {settings.schema_registry_url}/subjects
    Pipeline status      make status
    Logs                 {layout.logs}/
    Stop everything      make down
"""
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
