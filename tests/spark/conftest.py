"""Fixtures for the Spark tests (the shared `spark` session lives in tests/conftest.py)."""

from __future__ import annotations

import pytest


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
