"""Fixtures for the DAG tests: the producer tests' stack fixtures (local data source, stack check, per-test topics)."""

from tests.producer.stack_fixtures import datasource, stack_services, stack_settings  # noqa: F401
