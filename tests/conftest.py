"""Fixtures shared by every test folder; keep them generic (folder-specific ones live in each folder's conftest)."""

from __future__ import annotations

import uuid

import pytest

from pipeline.settings import Settings, load_settings


@pytest.fixture
def settings() -> Settings:
    """The settings the code under test would read (environment, .env, defaults)."""
    return load_settings()


@pytest.fixture
def unique_topic() -> str:
    """A topic name no other test or engineer on the shared stack uses: `test-<hex>`."""
    return f"test-{uuid.uuid4().hex[:12]}"
