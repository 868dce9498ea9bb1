"""The `user_stream` DAG under real Airflow: it parses cleanly, and `airflow dags test` publishes to Kafka.

Airflow runs in subprocesses with a throw-away AIRFLOW_HOME (SQLite, migrated once per session), so the
test process never picks up a user's ~/airflow and Airflow's config is not fixed by whoever imports it first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.settings import REPO_ROOT, Settings
from producer import register
from tests.producer.stack_fixtures import consume

pytestmark = pytest.mark.airflow
AIRFLOW = str(Path(sys.executable).with_name("airflow"))

DESCRIBE_DAG = textwrap.dedent("""
    import copy, json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
    dag = bag.dags.get("user_stream")
    if dag is not None:
        rejected = []
        for bad in ({"users": 0}, {"batch_size": 5001}, {"nationalities": "gb;ir"}, {"seed": "s" * 201},
                    {"datasource_url": "ftp://x/api/"}, {"datasource_url": "https://key:secret@x/api/"}):
            params = copy.deepcopy(dag.params)
            try:
                params.update(bad)  # what a trigger's conf does; validates on assignment
                params.validate()
            except Exception as exc:
                rejected.append(type(exc).__name__)
        out.update(
            schedule=dag.schedule, timetable=type(dag.timetable).__name__, catchup=dag.catchup,
            start_date=dag.start_date.isoformat(), tags=sorted(dag.tags), doc_md=dag.doc_md,
            retries=dag.default_args.get("retries"), retry_delay=dag.default_args["retry_delay"].total_seconds(),
            params=dag.params.dump(),
            tasks={t.task_id: {"upstream": sorted(t.upstream_task_ids), "retries": t.retries} for t in dag.tasks},
            timeouts={t.task_id: t.execution_timeout and t.execution_timeout.total_seconds() for t in dag.tasks},
            rejected=rejected,
        )
    print("DAG-JSON" + json.dumps(out, default=str))
""")


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(REPO_ROOT / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__LOGGING__LOGGING_LEVEL="INFO", **extra)
    return env


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """One migrated SQLite metadata DB for the whole session (migration is the slow part)."""
    home = tmp_path_factory.mktemp("airflow-home")
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=airflow_env(home), capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        pytest.fail(f"`airflow db migrate` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}", pytrace=False)
    return home


def describe_dag(home: Path, **env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", DESCRIBE_DAG, str(REPO_ROOT / "dags")],
                          env=airflow_env(home, **env), capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("DAG-JSON"))
    return json.loads(line.removeprefix("DAG-JSON"))


def test_dag_loads_without_import_errors(tmp_path):
    dag = describe_dag(tmp_path)
    assert dag["import_errors"] == {}
    assert dag["dag_ids"] == ["user_stream"]
    assert dag["tasks"] == {
        "check_schema_registered": {"upstream": [], "retries": 2},
        "fetch_and_publish": {"upstream": ["check_schema_registered"], "retries": 2},
        "report": {"upstream": ["check_schema_registered", "fetch_and_publish"], "retries": 2},
    }
    assert dag["params"] == {"users": 1000, "batch_size": 500, "nationalities": "", "seed": "",
                             "datasource_url": "", "max_dead_letter_fraction": 0.1}
    assert dag["rejected"] == ["ParamValidationError"] * 6
    assert dag["schedule"] is None and dag["timetable"] == "NullTimetable"
    assert dag["catchup"] is False
    assert dag["start_date"] == "2025-01-01T00:00:00+00:00"
    assert dag["retries"] == 2 and dag["retry_delay"] > 0
    assert "userstream" in dag["tags"]
    assert dag["doc_md"].lstrip().startswith("### user_stream")


def test_every_task_has_an_execution_timeout_the_fetch_deadline_fits_in(tmp_path):
    dag = describe_dag(tmp_path, DATASOURCE_DEADLINE_SECONDS="120")
    assert dag["timeouts"] == {"check_schema_registered": 300, "fetch_and_publish": 120 + 900, "report": 300}


def test_schedule_comes_from_the_environment(tmp_path):
    dag = describe_dag(tmp_path, USER_STREAM_SCHEDULE="@hourly")
    assert dag["schedule"] == "@hourly" and dag["timetable"] != "NullTimetable"


def dags_test(home: Path, settings: Settings, conf: dict, logical_date: str | None = None) -> subprocess.CompletedProcess:
    env = airflow_env(home, USERS_TOPIC=settings.users_topic, DEAD_LETTER_TOPIC=settings.dead_letter_topic,
                      DATASOURCE_URL=settings.datasource_url, SCHEMA_REGISTRY_URL=settings.schema_registry_url,
                      KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers)
    command = [AIRFLOW, "dags", "test", "user_stream", *([logical_date] if logical_date else []),
               "--conf", json.dumps(conf)]
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_dags_test_publishes_n_users(airflow_home, stack_settings):
    assert register.main(["--topic", stack_settings.users_topic], settings=stack_settings) == 0
    done = dags_test(airflow_home, stack_settings,
                     {"users": 25, "batch_size": 10, "nationalities": "gb, ir", "seed": "dag"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "'fetched': 25, 'published': 25, 'dead_lettered': 0" in output
    messages = consume(stack_settings, stack_settings.users_topic, 25)
    assert len(messages) == 25
    assert all(m.value()[0] == 0 for m in messages)


@pytest.mark.integration
def test_dags_test_fails_fast_without_a_registered_schema(airflow_home, stack_settings):
    done = dags_test(airflow_home, stack_settings, {"users": 5, "batch_size": 5})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "SchemaNotRegisteredError" in output and "make register" in output
    assert "new_state=failed" in output and "up_for_retry" not in output  # no retries for a missing schema


def published_ids(settings: Settings, topic: str, expected: int) -> set[str]:
    return {m.key().decode() for m in consume(settings.model_copy(update={"users_topic": topic}), topic, expected)}


@pytest.mark.integration
def test_runs_without_a_seed_draw_new_users_and_a_recorded_seed_replays_one(airflow_home, stack_settings):
    """A scheduled run has a logical date and no seed in its conf: the seed comes from the run, is in the
    task log and the report's XCom, and given back in the conf it fetches exactly the same users."""
    runs = {}
    for name, logical_date, conf in (("first", "2025-03-01T00:00:00+00:00", {}),
                                     ("second", "2025-03-01T01:00:00+00:00", {}),
                                     ("replay", None, None)):
        topic = f"{stack_settings.users_topic}-{name}"
        settings = stack_settings.model_copy(update={"users_topic": topic, "dead_letter_topic": f"{topic}.dl"})
        assert register.main(["--topic", topic], settings=settings) == 0
        if conf is None:  # a manual run given the first run's recorded seed
            conf = {"seed": runs["first"]["seed"]}
        done = dags_test(airflow_home, settings, {"users": 12, "batch_size": 5, **conf}, logical_date)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-5000:]
        seeds = set(re.findall(r"seed '([^']+)'; replay this run with conf", output))
        reported = re.findall(r"'dead_lettered': 0, 'seed': '([^']+)', 'schema_id': \d+", output)  # report's XCom
        assert len(seeds) == 1 and set(reported) == seeds, output[-3000:]
        runs[name] = {"seed": seeds.pop(), "ids": published_ids(settings, topic, 12)}

    assert runs["first"]["seed"] == "user_stream@2025-03-01T00:00:00+00:00"
    assert runs["second"]["seed"] == "user_stream@2025-03-01T01:00:00+00:00"
    assert len(runs["first"]["ids"]) == 12 and not runs["first"]["ids"] & runs["second"]["ids"]  # new users
    assert runs["replay"]["seed"] == runs["first"]["seed"] and runs["replay"]["ids"] == runs["first"]["ids"]
