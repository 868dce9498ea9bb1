"""The two test tiers: `make test` runs everything against the stack; `make test-fast` deselects by marker.

Every marker registered in pyproject.toml says what a test needs (the stack, a
JDK, Airflow, Spark, a browser), so the fast tier's expression must exclude
each one; tests/conftest.py makes sure a test using a service fixture carries
its marker.
"""

from __future__ import annotations

import re

from core.settings import REPO_ROOT

MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def fast_expression() -> str:
    return re.search(r"^FAST_TESTS := (.+)$", MAKEFILE, flags=re.M).group(1)


def registered_markers() -> set[str]:
    """The names in pyproject.toml's `markers = [...]` (read as text: tomllib needs Python 3.11)."""
    block = re.search(r"^markers = \[(.*?)^\]", (REPO_ROOT / "pyproject.toml").read_text(), flags=re.M | re.S).group(1)
    return set(re.findall(r'^\s*"(\w+):', block, flags=re.M))


def test_the_fast_tier_excludes_every_registered_marker():
    registered = registered_markers()
    excluded = set(re.findall(r"not (\w+)", fast_expression()))
    assert registered - excluded == set(), "add `not <marker>` to FAST_TESTS in the Makefile"
    assert excluded - registered == set(), "FAST_TESTS names a marker pyproject.toml does not register"

