"""Pipeline wiring helpers that decide whether a run counts as a success."""

from __future__ import annotations

import pytest

from core.settings import Settings
from producer.pipeline import RunCheckError, check_counts, user_subject
from producer.source import normalize_nat


def test_counts_that_add_up_pass():
    check_counts({"fetched": 100, "published": 95, "dead_lettered": 5}, 0.1)
    check_counts({"fetched": 0, "published": 0, "dead_lettered": 0}, 0.0)


def test_mostly_rejected_run_fails_and_says_where_to_look():
    with pytest.raises(RunCheckError, match=r"20 of 100 records were dead-lettered \(limit 10%\).*dead_letter.reason"):
        check_counts({"fetched": 100, "published": 80, "dead_lettered": 20}, 0.1)


def test_lost_records_fail_the_run():
    with pytest.raises(RunCheckError, match="records were lost"):
        check_counts({"fetched": 100, "published": 90, "dead_lettered": 0}, 0.5)


@pytest.mark.parametrize("raw,normal", [(" gb, ir ", "GB,IR"), ("", ""), ("ua,,rs,", "UA,RS"), ("US", "US")])
def test_nationalities_are_normalised(raw, normal):
    assert normalize_nat(raw) == normal


@pytest.mark.parametrize("strategy,subject", [("topic", "people-value"), ("record", "io.userstream.User"),
                                              ("topic_record", "people-io.userstream.User")])
def test_user_subject_follows_the_strategy(strategy, subject):
    assert user_subject(Settings(users_topic="people", subject_name_strategy=strategy)) == subject


def test_a_runs_seed_is_the_given_one_else_drawn_from_the_run():
    from datetime import datetime, timedelta, timezone

    from producer.pipeline import run_seed

    hourly = datetime(2025, 3, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert run_seed("userstream", hourly, "scheduled__x") == "userstream"  # an explicit seed wins
    assert run_seed("  replay-me ", None, "manual__x") == "replay-me"
    assert run_seed("", hourly, "scheduled__x") == "user_stream@2025-03-01T00:00:00+00:00"  # in UTC
    assert run_seed(None, None, "manual__2025-03-01T10:00:00") == "manual__2025-03-01T10:00:00"
    assert run_seed(" ", datetime(2025, 3, 2, tzinfo=timezone.utc), "r") != run_seed("", hourly, "r")
