"""Fixtures for the producer tests: see stack_fixtures.py (local data source, stack check, per-test topics)."""

from tests.producer.stack_fixtures import datasource, stack_services, stack_settings  # noqa: F401
