"""Fixtures shared by every test folder; keep them generic (folder-specific ones live in each folder's conftest)."""

from __future__ import annotations

import uuid

import pytest

from core.settings import Settings, load_settings


@pytest.fixture
def settings() -> Settings:
    """The settings the code under test would read (environment, .env, defaults)."""
    return load_settings()


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test or engineer on the shared stack uses: `test-<hex>`."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole run (JVM start-up is the slow part); tests never stop it.

    local[2] with the stack's connector jars and two shuffle partitions: what CI's 2 cores can afford.
    Every test that needs Spark takes this fixture: `getOrCreate()` would hand a test's own
    session-builder this same session anyway, and stopping it would break the tests after.
    """
    from spark.session import build_spark_session

    session = build_spark_session(
        load_settings(),
        "userstream-tests",
        master="local[2]",
        extra_conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"},
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# Fixtures that reach a service, a JVM, Airflow or a browser, and the marker a test using one must carry,
# so that `make test-fast` (which deselects by marker) never runs it and a test's needs show in its marks.
FIXTURE_MARKERS = {
    "stack_services": "integration", "stack_settings": "integration", "live_settings": "integration",
    "fresh_topic": "integration", "corner": "integration", "corner_factory": "integration",
    "keyspace": "integration", "secured_stack": "integration", "private_stack": "integration",
    "spark": "spark", "standalone_cluster": "spark", "airflow_home": "airflow",
    "monitor_url": "browser", "browser": "browser",
}


def pytest_collection_modifyitems(config, items):
    """Refuse to run a test that uses a service fixture without that service's marker (the tiers rely on marks)."""
    unmarked = sorted(
        f"{item.nodeid}: uses `{fixture}`, so mark it @pytest.mark.{marker}"
        for item in items
        for fixture, marker in FIXTURE_MARKERS.items()
        if fixture in item.fixturenames and item.get_closest_marker(marker) is None
    )
    if unmarked:
        raise pytest.UsageError("tests that need the stack must say so:\n  " + "\n  ".join(unmarked))
