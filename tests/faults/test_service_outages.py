"""A service the job needs goes away under load and comes back: the job waits, says so, and carries on in-process.

Cassandra and the registry are stopped for 30 s (SIGTERM through the
launcher, as `make down` would), then started again; Kafka's broker is
SIGKILLed and restarted. Each outage is shorter than STREAM_FAULT_RETRY_SECONDS,
so the job must ride it out without a restart, show `waiting` with the
service's name in its state file meanwhile, and land every user exactly once.
The registry is stopped just as the first records of a new schema version
arrive, whose writer schema the job has never seen. Kafka goes last: the
registry keeps its schemas in Kafka too.
"""

from __future__ import annotations

import time

import pytest

from core import cassandra_schema, names
from core.job_state import WAITING
from tests.faults.lane import LOAD_SECONDS
from tests.spark.harness import wait_until
from tests.spark.users import make_user, v2_schema

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.spark]

OUTAGE_SECONDS = 30
USERS = 600  # 40 s of load at RATE: it spans the 30 s outage, which starts once rows land
RATE = 15  # users per second: the load spans the outage


def outage(stack, name: str, seconds: float = OUTAGE_SECONDS) -> float:
    """Stop `name`, keep it down for `seconds`, start it again; when it was ready (the end of the fault)."""
    began = stack.stop(name)
    try:
        time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    finally:
        ended = stack.start(name)
    return ended


def landing(lane) -> None:
    """Rows are arriving before the fault: the job runs and the load flows."""
    wait_until(lambda: lane.corner.count() > 0, 120, f"the first rows before the fault\n{lane.job.describe()}")


def test_cassandra_stopped_for_30_s_under_load(lane, case, private_stack):
    case.case = "Cassandra stopped 30 s under load"
    lane = lane("cassandra")
    users, load = lane.users_under_load(case, USERS, RATE)
    landing(lane)
    states = lane.job.watch_states()
    ended = outage(private_stack, names.CASSANDRA)
    case.catch_up_seconds = lane.catch_up(ended, lane.watermarks())
    load.join(LOAD_SECONDS)
    lane.settle(case, users)
    assert (WAITING, names.CASSANDRA) in states, f"the job never said it was waiting for Cassandra: {states}"


def test_registry_stopped_for_30_s_as_a_new_schema_versions_first_records_arrive(lane, case, private_stack):
    case.case = "registry stopped 30 s as schema v2's first records arrive"
    lane = lane("registry")
    lane.start_job()
    run = lane.corner.settings.users_topic
    v2 = v2_schema("favourite_colour", "unknown")
    # The documented evolution order: the column first, then the new version.
    with cassandra_schema.connect(lane.corner.settings) as session:
        cassandra_schema.add_columns_for(lane.corner.settings, session, v2, dry_run=False)
    v2_id = lane.corner.register(v2)
    v1_users = [make_user(i, run) for i in range(USERS // 2)]
    v2_users = [{**make_user(i, run), "favourite_colour": f"colour {i}"} for i in range(USERS // 2, USERS)]
    v1_records, v2_records = lane.encode(v1_users), lane.encode(v2_users, v2)  # encoded while the registry answers
    case.users_produced = len(v1_users) + len(v2_users)
    first = lane.load(v1_records, RATE)
    landing(lane)
    states = lane.job.watch_states()
    began = private_stack.stop(names.REGISTRY)
    try:
        second = lane.load(v2_records, RATE)  # the job meets schema v2's id while the registry is away
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
    finally:
        ended = private_stack.start(names.REGISTRY)
    case.catch_up_seconds = lane.catch_up(ended, lane.watermarks())
    first.join(LOAD_SECONDS)
    second.join(LOAD_SECONDS)
    lane.settle(case, v1_users + v2_users)
    assert (WAITING, names.REGISTRY) in states, f"the job never said it was waiting for the registry: {states}"
    rows = lane.corner.rows()
    decoded_with = {(user in v2_users, rows[user["id"]]["schema_id"]) for user in v1_users + v2_users}
    assert decoded_with == {(False, lane.schema_id), (True, v2_id)}, f"(v2 user?, writer schema id) of the rows: {decoded_with}"
    case.note = "v2 = v1 + favourite_colour (default 'unknown'); column added before registering"


def test_kafka_broker_killed_and_restarted_under_load(lane, case, private_stack):
    case.case = "Kafka broker SIGKILLed and restarted under load"
    lane = lane("kafka")
    users, load = lane.users_under_load(case, USERS, RATE)
    landing(lane)
    private_stack.kill(names.KAFKA)
    ended = private_stack.start(names.KAFKA)
    case.catch_up_seconds = lane.catch_up(ended, lane.watermarks())
    load.join(LOAD_SECONDS)
    lane.settle(case, users)
    case.note = "SIGKILL of the broker's process group, then the launcher's start"
