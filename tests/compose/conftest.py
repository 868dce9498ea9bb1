"""Shared fixtures for the static checks of docker-compose.yml.

No Docker engine exists on the machines that run these tests, so the compose
file is checked as data: parsed with PyYAML (which resolves the `<<` merge
keys the file uses, as Compose does) and compared with what the code expects.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
EXPOSE_FILE = REPO_ROOT / "docker-compose.expose.yml"  # publishes Cassandra and the Spark master when asked
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SCHEMA_FILE = Path(__file__).with_name("compose_spec.json")


@pytest.fixture(scope="session")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="session")
def compose(compose_text: str) -> dict:
    """The compose file as Compose sees it before interpolation (anchors merged)."""
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="session")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="session")
def compose_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="session")
def exposed(compose_text: str) -> dict:
    """docker-compose.expose.yml, the override that publishes what the main file keeps inside."""
    return yaml.safe_load(EXPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def exposed_services(exposed: dict) -> dict[str, dict]:
    return exposed["services"]
