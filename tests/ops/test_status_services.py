"""Tests of the status view's sections and probes against real services: the embedded stack, and Airflow's API on pytest-httpserver.

Kafka offsets, a real consumer group's commits (made the way the Spark job
makes them), dead letters on a real topic, the registry and Cassandra are
asked on the shared stack, each test on its own topic, group or subject.
Airflow is optional in the stack, so its REST API is pinned against
pytest-httpserver: the requests the view makes and Airflow 3's answers.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from core import dead_letter, health, names
from core.health import ServiceHealth
from ops.status import kafka, render, report, sections
from tests.ops.conftest import produce, settings_for


# --- Against the real embedded services --------------------------------------------------------------------


@pytest.mark.integration
def test_end_offsets_of_a_real_topic(live_settings, fresh_topic):
    produce(live_settings, fresh_topic, [(0, []), (0, []), (0, []), (2, [])])
    (offsets,) = kafka.topic_offsets(live_settings, [fresh_topic], timeout=10)
    assert (offsets.error, offsets.exists) == (None, True)
    assert offsets.earliest == {0: 0, 1: 0, 2: 0}
    assert offsets.latest == {0: 3, 1: 0, 2: 1}
    assert offsets.messages == 4


@pytest.mark.integration
def test_missing_topic_is_reported_as_not_existing(live_settings):
    (offsets,) = kafka.topic_offsets(live_settings, [f"status-test-missing-{uuid.uuid4().hex[:8]}"], timeout=10)
    assert (offsets.error, offsets.exists) == (None, False)


@pytest.mark.integration
def test_lag_from_a_real_consumer_groups_commits(live_settings, fresh_topic):
    """Commits made the way the Spark job makes them (AdminClient.alter_consumer_group_offsets), read back as lag."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    produce(live_settings, fresh_topic, [(0, [])] * 5 + [(1, [])] * 2 + [(2, [])] * 4)
    group = f"status-test-{uuid.uuid4().hex[:8]}"
    settings = live_settings.model_copy(update={"users_topic": fresh_topic, "spark_consumer_group": group})
    (topic,) = kafka.topic_offsets(settings, [fresh_topic], timeout=10)
    before = kafka.group_lag(settings, topic, timeout=10)
    assert [(p.partition, p.committed, p.lag) for p in before.partitions] == [(0, None, 5), (1, None, 2), (2, None, 4)]

    admin = AdminClient(live_settings.kafka_config())
    commit = ConsumerGroupTopicPartitions(group, [TopicPartition(fresh_topic, 0, 3), TopicPartition(fresh_topic, 1, 2)])
    admin.alter_consumer_group_offsets([commit])[group].result(timeout=30)
    try:
        after = kafka.group_lag(settings, topic, timeout=10)
        assert after.error is None
        assert [(p.partition, p.end_offset, p.committed, p.lag) for p in after.partitions] == [(0, 5, 3, 2), (1, 2, 2, 0), (2, 4, None, 4)]
        assert after.total == 6
    finally:
        admin.delete_consumer_groups([group])[group].result(timeout=30)


@pytest.mark.integration
def test_dead_letters_counted_by_stage_and_reason_on_a_real_topic(live_settings, fresh_topic):
    transform = dead_letter.headers(dead_letter.TRANSFORM, "postcode missing", "http://x/api/?seed=1")
    decode = dead_letter.headers(dead_letter.DECODE, "unknown schema id 99", "users/0/5")
    produce(live_settings, fresh_topic, [(0, transform), (1, transform), (2, decode), (2, [])])
    settings = live_settings.model_copy(update={"dead_letter_topic": fresh_topic})
    counts = kafka.dead_letter_counts(settings, timeout=10, scan_seconds=30)
    assert (counts.error, counts.complete) == (None, True)
    assert counts.by_stage == {"transform": 2, "decode": 1, "(no stage header)": 1}
    assert counts.by_reason == {"transform": {"postcode missing": 2}, "decode": {"unknown schema id 99": 1},
                                "(no stage header)": {"(no reason header)": 1}}
    assert (counts.scanned, counts.expected) == (4, 4)


@pytest.mark.integration
def test_registry_subject_versions_and_compatibility(live_settings):
    subject = f"status-test-{uuid.uuid4().hex[:12]}-value"
    base = live_settings.schema_registry_url.rstrip("/")
    schema = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "string"}]}
    registered = requests.post(f"{base}/subjects/{subject}/versions", json={"schema": json.dumps(schema)}, timeout=10)
    registered.raise_for_status()
    try:
        view = sections.schema_subjects(live_settings, timeout=10)
        assert view.error is None and view.global_compatibility == live_settings.schema_compatibility
        (info,) = [s for s in view.subjects if s.name == subject]
        assert (info.versions, info.latest_id) == ([1], registered.json()["id"])
        # Apicurio answers a subject's effective level (the global rule) where Confluent's registry answers 404.
        assert info.compatibility == live_settings.schema_compatibility and info.compatibility_source in ("subject", "global")
    finally:
        requests.delete(f"{base}/subjects/{subject}", timeout=10)
        requests.delete(f"{base}/subjects/{subject}", params={"permanent": "true"}, timeout=10)


@pytest.mark.integration
def test_cassandra_probe_and_row_count(live_settings):
    answer = health.probe_cassandra(live_settings, 10)
    assert answer.up and answer.detail.startswith("Cassandra 5.") and answer.version.startswith("5.")
    local = sections.cassandra_rows(live_settings.model_copy(update={"cassandra_keyspace": "system", "cassandra_table": "local"}), 10)
    assert (local.error, local.rows) == (None, 1)


@pytest.mark.integration
def test_the_real_stack_in_one_report(live_settings):
    built = report.collect(live_settings, timeout=10, scan_seconds=10)
    rows = {s.name: s for s in built.services}
    assert [s.name for s in built.services] == list(names.ALL_SERVICES)
    assert all(rows[name].up for name in names.CORE_SERVICES), {n: rows[n].detail for n in names.CORE_SERVICES}
    assert rows["kafka"].version == health.installed_version(live_settings.stack_home, "kafka")


# --- Airflow's REST API, against pytest-httpserver ------------------------------------------------------------
# These pin the requests the view makes (login, order, bearer token) and the parsing of Airflow 3's
# response shapes (DAGRunCollectionResponse, HealthInfoResponse).

RUN = {"dag_run_id": "manual__2024-11-25T00:00:00+00:00", "dag_id": names.DAG_ID, "logical_date": None,
       "run_after": "2024-11-25T00:00:00Z", "start_date": "2024-11-25T00:00:01Z", "end_date": None,
       "run_type": "manual", "state": "running"}
HEALTH = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy"},
          "triggerer": {"status": None}, "dag_processor": {"status": "healthy"}}


@pytest.fixture
def airflow(httpserver):
    httpserver.expect_request("/auth/token", method="POST", json={"username": "admin", "password": "right"}).respond_with_json(
        {"access_token": "tok"}, status=201)
    httpserver.expect_request("/auth/token", method="POST").respond_with_json({"detail": "Invalid credentials"}, status=401)
    httpserver.expect_request(f"/api/v2/dags/{names.DAG_ID}/dagRuns", headers={"Authorization": "Bearer tok"},
                              query_string={"order_by": "-run_after", "limit": "5"}).respond_with_json(
        {"dag_runs": [RUN], "total_entries": 7})
    httpserver.expect_request("/api/v2/dags/nope/dagRuns").respond_with_json({"detail": "not found"}, status=404)
    return httpserver


def test_dag_runs_logs_in_and_asks_for_the_newest_runs(airflow):
    view = sections.dag_runs(settings_for(airflow_url=airflow.url_for("/"), airflow_admin_password="right"), timeout=5)
    assert (view.error, view.total) == (None, 7)
    assert [(r.run_id, r.state, r.run_type, r.run_after) for r in view.runs] == [
        ("manual__2024-11-25T00:00:00+00:00", "running", "manual", "2024-11-25T00:00:00Z")]
    assert "manual__2024-11-25" in render.text(render.dag_runs_section(view))


def test_dag_runs_with_a_wrong_password_says_so(airflow):
    view = sections.dag_runs(settings_for(airflow_url=airflow.url_for("/"), airflow_admin_password="wrong"), timeout=5)
    assert view.error == "Airflow rejected the password of user 'admin'"


def test_dag_runs_of_an_unknown_dag(airflow):
    view = sections.dag_runs(settings_for(airflow_url=airflow.url_for("/"), airflow_admin_password="right"), timeout=5, dag_id="nope")
    assert view.error == "DAG nope not found (not parsed yet?)"


def test_airflow_probe_reports_each_component(httpserver):
    httpserver.expect_request("/api/v2/monitor/health").respond_with_json(HEALTH)
    httpserver.expect_request("/api/v2/version").respond_with_json({"version": "3.3.2"})
    answer = health.probe_airflow(settings_for(airflow_url=httpserver.url_for("/")), 5)
    assert (answer.up, answer.core, answer.version) == (True, False, "3.3.2")
    assert answer.detail == "dag_processor healthy, metadatabase healthy, scheduler healthy, triggerer None"


def test_airflow_probe_down_on_an_unhealthy_or_missing_required_component(httpserver):
    unhealthy = {**HEALTH, "scheduler": {"status": "unhealthy"}}
    httpserver.expect_oneshot_request("/api/v2/monitor/health").respond_with_json(unhealthy)
    answer = health.probe_airflow(settings_for(airflow_url=httpserver.url_for("/")), 5)
    assert not answer.up and "scheduler unhealthy" in answer.detail
    without_processor = {k: v for k, v in HEALTH.items() if k != "dag_processor"}
    httpserver.expect_request("/api/v2/monitor/health").respond_with_json(without_processor)
    assert health.probe_airflow(settings_for(airflow_url=httpserver.url_for("/")), 5).up
    required = health.probe_airflow(settings_for(airflow_url=httpserver.url_for("/")), 5, require=("scheduler", "dag_processor"))
    assert not required.up


def test_service_health_is_core_by_name():
    assert [ServiceHealth(n, "a", True, "d").core for n in names.ALL_SERVICES] == [True] * 4 + [False] * 3
