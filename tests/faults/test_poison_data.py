"""Records that used to stop the job for good: dates before 1900 and in year 1, a row Cassandra refuses.

Each is mixed into a steady load of ordinary users. A record that makes every
attempt of its batch fail is a crash loop in the making (the supervisor would
stop the job after a few restarts): the job must land the old dates, and
dead-letter the refused row once, with stage `write`, while every other user
of the batch is written.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from core import dead_letter
from tests.faults.checks import Poison
from tests.faults.lane import LOAD_SECONDS
from tests.spark.users import make_user

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.spark]

UTC = dt.timezone.utc
OLD_MOMENTS = [
    dt.datetime(1899, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),  # the last millisecond Spark 3.5 does not rebase
    dt.datetime(1850, 6, 15, 12, 0, tzinfo=UTC),
    dt.datetime(1582, 10, 10, 8, 30, tzinfo=UTC),  # a day the Julian-to-Gregorian switch skipped
    dt.datetime(1582, 10, 4, tzinfo=UTC),  # the last Julian day
    dt.datetime(1000, 3, 1, tzinfo=UTC),
    dt.datetime(1, 1, 1, tzinfo=UTC),  # year 1: TRANSFORM_MIN_DATE's default
    dt.datetime(1, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
]
# Over the 16 MiB Cassandra takes in one mutation, in string fields each under the Avro cap
# (SPARK_AVRO_MAX_FIELD_BYTES, 8 MiB); lz4 shrinks it far below Kafka's 1 MB batch limit.
FIELD_BYTES = 6 * 1024 * 1024
BIG_FIELDS = ("first_name", "last_name", "street_name")


def test_users_born_before_1900_and_in_year_1(lane, case):
    case.case = "users born before 1900 and in year 1"
    lane = lane("olddates")
    lane.start_job()
    run = lane.corner.settings.users_topic
    users = [make_user(i, run) for i in range(400)]
    for i, moment in enumerate(OLD_MOMENTS):
        users[50 + i * 40]["date_of_birth"] = moment
        users[51 + i * 40]["registered_at"] = moment
    case.users_produced = len(users)
    started = time.monotonic()
    load = lane.load(lane.encode(users), rate=40)
    load.join(LOAD_SECONDS)
    case.catch_up_seconds = lane.catch_up(started)
    lane.settle(case, users)
    case.note = "dates from year 1 to 1899, two of them in 1582's Julian-Gregorian switch; catch-up counted from the load's start"


def test_a_row_cassandra_refuses_is_dead_lettered_once_and_the_rest_written(lane, case):
    case.case = "a row Cassandra refuses (over 16 MiB)"
    lane = lane("refused")
    lane.start_job()
    run = lane.corner.settings.users_topic
    users = [make_user(i, run) for i in range(400)]
    huge = make_user(400, run)
    for name in BIG_FIELDS:
        huge[name] = name[0] * FIELD_BYTES
    records = lane.encode(users[:200]) + lane.encode([huge]) + lane.encode(users[200:])
    case.users_produced = len(records)
    started = time.monotonic()
    load = lane.load(records, rate=40, **{"message.max.bytes": 64 * 1024 * 1024})
    load.join(LOAD_SECONDS)
    case.catch_up_seconds = lane.catch_up(started)
    # The dead letter keeps the record's first DEAD_LETTER_MAX_VALUE_BYTES (its full 18 MiB would be over the
    # dead-letter topic's max.message.bytes: RecordTooLargeException on every attempt, a crash loop).
    whole = records[200][1]
    cap = lane.corner.settings.dead_letter_max_value_bytes
    poison = Poison(huge["id"], dead_letter.WRITE, f"only its first {cap} are kept", value=whole[:cap], original_bytes=len(whole))
    lane.settle(case, users, [poison])
    case.note = f"one user of {len(BIG_FIELDS)} x 6 MiB strings among 400; catch-up counted from the load's start"
