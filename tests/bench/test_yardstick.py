"""bench/yardstick.py: the machine's speed at pure-CPU serialization, taken at the start of a load run."""

from __future__ import annotations

import datetime as dt

import pytest

from bench.yardstick import fastavro_users_per_second
from producer.transform import transform
from standin.randomuser import ALL_NATS, generate


def test_yardstick_counts_users_per_second():
    now = dt.datetime.now(dt.timezone.utc)
    users = [transform(raw, now) for raw in generate("yardstick", 1, 200, ALL_NATS)]
    slow = fastavro_users_per_second(users, repeats=3)
    assert 1_000 < slow < 10_000_000
    # Twice the users take about twice as long: the figure is a rate, not a duration.
    assert fastavro_users_per_second(users * 2, repeats=3) == pytest.approx(slow, rel=0.6)


def test_yardstick_needs_users():
    with pytest.raises(ValueError, match="needs users"):
        fastavro_users_per_second([])
