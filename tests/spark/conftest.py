"""Fixtures for the Spark tests: one local SparkSession for the whole folder (JVM start-up is the slow part)."""

from __future__ import annotations

import pytest

from pipeline.settings import load_settings


@pytest.fixture(scope="session")
def spark():
    """local[2] with the stack's connector jars and two shuffle partitions: what CI's 2 cores can afford."""
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


@pytest.fixture
def corner_factory(tmp_path):
    """Make isolated corners of the shared stack (see harness.Corner); all are cleaned up after the test."""
    from tests.spark.harness import Corner

    made = []

    def make(name: str) -> Corner:
        corner = Corner.create(tmp_path, name)
        made.append(corner)
        return corner

    yield make
    for corner in made:
        corner.close()
