"""
### user_stream: randomuser API -> Avro -> Kafka

Fetches users from a randomuser.me-compatible API (DATASOURCE_URL), validates
each record, publishes valid users to Kafka (USERS_TOPIC) as Avro in the
Confluent wire format against the schema registered in the Schema Registry,
and sends rejected records to the dead-letter topic (DEAD_LETTER_TOPIC) with
the reason. Spark decodes the topic and writes Cassandra.

Tasks (thin wiring around `producer.pipeline`; XCom carries only counts):

1. `check_schema_registered`: fails fast if the subject has no schema (run `make register`);
   an unreachable registry, or a worker Airflow itself failed on a busy machine, is retried.
2. `fetch_and_publish`: streams pages of `batch_size` users (seed + page, so a run replays
   exactly), publishes, waits for every delivery report; returns the counts and the seed.
3. `report`: logs the counts and the seed; fails the run if too many records were dead-lettered.

The seed: a run without one in its conf draws it from the run (a scheduled run from its
logical date, `user_stream@2025-01-01T00:00:00+00:00`; a manual one from its run id), so each
scheduled run fetches new users. The seed is in the task log and the `report` XCom; trigger
with `{"seed": "<that seed>"}` (and the same users and batch_size) to replay the run exactly.

Trigger with conf, e.g. `{"users": 1000, "batch_size": 500, "nationalities": "gb,ir", "seed": "userstream"}`
(add `"datasource_url": "https://randomuser.me/api/"` to read another API than DATASOURCE_URL):

    airflow dags trigger user_stream --conf '{"users": 100}'
    airflow dags test user_stream --conf '{"users": 100}'

Schedule: USER_STREAM_SCHEDULE (settings.user_stream_schedule: a cron expression or preset such as
`@hourly`); unset or empty means manual only.
Every task has an `execution_timeout`: fetch_and_publish gets DATASOURCE_DEADLINE_SECONDS
(the whole fetch) plus PUBLISH_MARGIN for publishing, so a stuck run fails instead of hanging.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)
# The fetch has its own deadline (DATASOURCE_DEADLINE_SECONDS); publishing and flushing get this on top.
PUBLISH_MARGIN = timedelta(minutes=15)
SHORT_TASK_TIMEOUT = timedelta(minutes=5)  # the schema check (retries included) and the report


def _fetch_timeout() -> timedelta:
    """fetch_and_publish's execution_timeout, from the settings the worker will run with."""
    from core.settings import load_settings

    return timedelta(seconds=load_settings().datasource_deadline_seconds) + PUBLISH_MARGIN


def _schedule() -> str | None:
    """The DAG's schedule from the settings the dag-processor parses with; None (manual runs only) when unset or empty."""
    from core.settings import load_settings

    return load_settings().user_stream_schedule or None


@dag(
    dag_id="user_stream",
    doc_md=__doc__,
    schedule=_schedule(),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["userstream", "producer", "kafka", "avro"],
    params={
        "users": Param(1000, type="integer", minimum=1, title="Users",
                       description="How many users to fetch and publish."),
        "batch_size": Param(500, type="integer", minimum=1, maximum=5000, title="Batch size",
                            description="Users per API request (one page); the API allows at most 5000."),
        "nationalities": Param("", type="string", pattern=r"^\s*([A-Za-z]{2}\s*(,\s*[A-Za-z]{2}\s*)*)?$",
                               title="Nationalities",
                               description='Comma list such as "gb,ir,ua"; empty means all.'),
        "seed": Param("", type="string", maxLength=200, title="Seed",
                      description="API seed: the same seed, users and batch size fetch the same users (replay). "
                                  "Empty: drawn from the run (its logical date, else its run id), so each "
                                  "scheduled run fetches new users; the seed used is in the run's report."),
        # Which randomuser-compatible API to read; empty means the worker's DATASOURCE_URL. No
        # credentials in it (no "@"): a run's conf is stored and shown in the UI.
        "datasource_url": Param("", type="string", pattern=r"^(https?://[^\s@/]+(/[^\s@]*)?)?$", title="Data source URL",
                                description="A randomuser-compatible API such as https://randomuser.me/api/; "
                                            "empty means DATASOURCE_URL."),
        "max_dead_letter_fraction": Param(0.1, type="number", minimum=0, maximum=1, title="Max dead-letter fraction",
                                          description="Fail the run when more than this fraction of fetched "
                                                      "records was dead-lettered."),
    },
)
def user_stream():
    # Retried when the registry or Airflow itself was too slow; a missing schema fails at once.
    @task(execution_timeout=SHORT_TASK_TIMEOUT)
    def check_schema_registered() -> dict:
        """The subject must already have a schema: producers never register one."""
        from core.settings import load_settings
        from producer.pipeline import check_schema_registered as check
        from producer.publish import SchemaNotRegisteredError

        try:
            return check(load_settings())
        except SchemaNotRegisteredError as missing:
            raise AirflowFailException(str(missing)) from missing  # waiting will not register it: no retry

    @task(execution_timeout=_fetch_timeout())
    def fetch_and_publish(**context) -> dict:
        """Source -> transform -> publish, page by page; returns the counts and the seed used."""
        from core.settings import load_settings
        from producer.pipeline import run, run_seed

        params = context["params"]
        settings = load_settings()
        if params.get("datasource_url"):
            settings = settings.model_copy(update={"datasource_url": params["datasource_url"]})
        seed = run_seed(params["seed"], context.get("logical_date"), context["run_id"])
        log.info("seed %r; replay this run with conf {\"seed\": %r, \"users\": %d, \"batch_size\": %d}",
                 seed, seed, params["users"], params["batch_size"])
        counts = run(settings, users=params["users"], batch_size=params["batch_size"],
                     nat=params["nationalities"], seed=seed)
        return {**counts, "seed": seed}

    # A retry is for Airflow's own hiccups: a failed count check raises AirflowFailException, never retried.
    @task(execution_timeout=SHORT_TASK_TIMEOUT)
    def report(schema: dict, counts: dict, **context) -> dict:
        """Say what happened; a mostly-rejected run is a failure, not a green DAG."""
        from producer.pipeline import RunCheckError, check_counts

        log.info("subject %s (schema id %s, version %s): fetched %d, published %d, dead-lettered %d; seed %r",
                 schema["subject"], schema["schema_id"], schema["version"],
                 counts["fetched"], counts["published"], counts["dead_lettered"], counts["seed"])
        try:
            check_counts(counts, context["params"]["max_dead_letter_fraction"])
        except RunCheckError as failed:
            raise AirflowFailException(str(failed)) from failed  # no retry: the counts would not change
        return {**counts, "schema_id": schema["schema_id"]}

    schema = check_schema_registered()
    counts = fetch_and_publish()
    schema >> counts
    report(schema, counts)


user_stream()
