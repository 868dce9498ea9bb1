"""Which failures the job waits out (and for whom), how it retries, and the registry's not-found grace.

The classification is what the fault suite (tests/faults/) relies on, so
each transient kind is pinned here; the Java ones come from real Spark
writes to a closed port, not from hand-written strings.
"""

from __future__ import annotations

import json
import time

import pytest
from cassandra import OperationTimedOut, ReadTimeout
from cassandra.cluster import NoHostAvailable
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core.cassandra_schema import CassandraUnavailable
from core.topics import TopicError
from spark.faults import (
    CASSANDRA, KAFKA, REGISTRY, FaultRider, ServiceUnavailable, SparkStalled, StateReporter, describe, failure_error,
    run_bounded, transient_service,
)
from spark.registry import RegisteredSchema, RegistryError, RegistryUnreachable, SchemaBook, SchemaNotFoundYet
from spark.sink import SchemaMismatchError
from spark.write_split import refused_by_a_row
from tests.ports import closed_port
from tests.spark.users import V1


def topic_error(code: int) -> TopicError:
    try:
        raise TopicError("cannot list Kafka topics") from KafkaException(KafkaError(code))
    except TopicError as exc:
        return exc


@pytest.mark.parametrize(("error", "service"), [
    (CassandraUnavailable("cannot reach Cassandra at 127.0.0.1:9042"), CASSANDRA),
    (NoHostAvailable("no host", {}), CASSANDRA),
    (OperationTimedOut("timed out"), CASSANDRA),
    (ReadTimeout("read timeout"), CASSANDRA),
    (RuntimeError("java.lang.IllegalStateException: Control channel not available, aborting schema refresh"), CASSANDRA),
    (RegistryUnreachable("schema registry at x did not answer"), REGISTRY),
    (SchemaNotFoundYet([7], "http://r", 60), REGISTRY),
    (SchemaRegistryError(503, 50301, "unavailable"), REGISTRY),
    (KafkaException(KafkaError(KafkaError._TRANSPORT)), KAFKA),
    (KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)), KAFKA),
    (KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE)), KAFKA),
    (topic_error(KafkaError._TRANSPORT), KAFKA),
    # Final: retrying would fail the same way.
    (SchemaRegistryError(404, 40403, "not found"), None),
    (SchemaRegistryError(401, 40101, "unauthorized"), None),
    (RegistryError("subject 'users-value' has no version latest"), None),
    (SchemaMismatchError("no column for x"), None),
    (KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)), None),
    (topic_error(KafkaError.POLICY_VIOLATION), None),
    (ServiceUnavailable(CASSANDRA, 300, CassandraUnavailable("x")), None),
    (ValueError("a bug"), None),
])
def test_transient_failures_name_their_service(error, service):
    assert transient_service(error, default=CASSANDRA) == service


def test_rider_retries_a_transient_failure_reports_waiting_then_recovery():
    events, attempts = [], []

    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise CassandraUnavailable("cannot reach Cassandra at 127.0.0.1:9042")
        return "written"

    rider = FaultRider(30, on_wait=lambda service, detail: events.append((service, detail)),
                       on_recover=lambda: events.append("recovered"), max_backoff=0.5)
    assert rider.call(CASSANDRA, flaky, "batch 3: writing rows") == "written"
    assert len(attempts) == 3 and attempts[2] - attempts[0] >= 1.0, "backoff between attempts"
    assert events == [(CASSANDRA, "batch 3: writing rows: cannot reach Cassandra at 127.0.0.1:9042")] * 2 + ["recovered"]


def test_rider_resets_the_failing_services_client_before_each_retry():
    """A Cassandra outage can leave the connector's cached session broken: it is dropped before every retry."""
    order, attempts = [], []

    def flaky():
        attempts.append(1)
        order.append("attempt")
        if len(attempts) < 3:
            raise CassandraUnavailable("cannot reach Cassandra at 127.0.0.1:9042")
        return "written"

    rider = FaultRider(30, max_backoff=0.1, reset={CASSANDRA: lambda: order.append("reset cassandra"),
                                                    REGISTRY: lambda: order.append("reset registry")})
    assert rider.call(CASSANDRA, flaky, "batch 3: writing rows") == "written"
    assert order == ["attempt", "reset cassandra", "attempt", "reset cassandra", "attempt"]


def test_rider_gives_up_after_the_bound_naming_the_service():
    rider = FaultRider(1.5, max_backoff=0.5)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"^registry still unavailable after 2 s .*did not answer") as caught:
        rider.call(KAFKA, lambda: (_ for _ in ()).throw(RegistryUnreachable("schema registry at x did not answer")), "start")
    assert 1.5 <= time.monotonic() - started < 10 and caught.value.service == REGISTRY


def test_rider_raises_a_final_failure_at_once():
    calls = []

    def broken():
        calls.append(1)
        raise SchemaMismatchError("no column for favourite_colour")

    with pytest.raises(SchemaMismatchError):
        FaultRider(30).call(CASSANDRA, broken, "batch 1")
    assert calls == [1]


def test_failed_state_says_what_to_do(tmp_path):
    error = ServiceUnavailable(CASSANDRA, 300, CassandraUnavailable("cannot reach Cassandra at 127.0.0.1:9042"))
    record = failure_error(error, 7, {"users": {"0": 120}})
    assert record == {
        "class": "ServiceUnavailable",
        "message": "cassandra still unavailable after 300 s of retries (STREAM_FAULT_RETRY_SECONDS): "
                   "cannot reach Cassandra at 127.0.0.1:9042",
        "batch_id": 7, "offsets": {"users": {"0": 120}}, "hint": record["hint"],
    }
    assert record["hint"].startswith("Start Cassandra (`make up`")
    reporter = StateReporter(tmp_path / "users.state.json")
    reporter.waiting(CASSANDRA, "batch 7: writing rows: x")
    reporter.failed(record)
    assert json.loads((tmp_path / "users.state.json").read_text())["error"]["batch_id"] == 7


@pytest.mark.spark
def test_java_failures_from_a_closed_port_are_transient_for_their_service(spark):
    """Real connector and Kafka-client exceptions, as Spark hands them to foreachBatch."""
    from pyspark.sql import functions as F

    port = closed_port()
    rows = spark.range(1).select(F.lit(1).alias("id"))
    with pytest.raises(Exception) as cassandra_down:
        (rows.write.format("org.apache.spark.sql.cassandra").options(keyspace="k", table="t")
         .option("spark.cassandra.connection.port", str(port)).mode("append").save())
    with pytest.raises(Exception) as kafka_down:
        (rows.select(F.lit(b"v").alias("value")).write.format("kafka")
         .option("kafka.bootstrap.servers", f"127.0.0.1:{port}").option("kafka.max.block.ms", "2000")
         .option("topic", "t").save())
    assert transient_service(cassandra_down.value, default=KAFKA) == CASSANDRA
    assert "Could not reach any contact point" in describe(cassandra_down.value)
    assert transient_service(kafka_down.value, default=CASSANDRA) == KAFKA
    assert not refused_by_a_row(cassandra_down.value) and not refused_by_a_row(kafka_down.value)


class GraceRegistry:
    """Id 1 is V1; id 5 appears when `registered` is set."""

    url = "http://registry"

    def __init__(self):
        self.registered = False

    def schema_by_id(self, schema_id):
        if schema_id == 1 or (schema_id == 5 and self.registered):
            return RegisteredSchema(schema_id, json.dumps(V1))
        return None

    def subject_version(self, subject, version="latest"):
        return RegisteredSchema(1, json.dumps(V1), subject, 1)


def test_an_unknown_id_is_waited_for_within_the_grace_then_dead_lettered():
    now = [100.0]
    client = GraceRegistry()
    book = SchemaBook(client=client, subject="s", reader_version="latest", compatibility=lambda r, w: None,
                      not_found_grace=60, clock=lambda: now[0])
    with pytest.raises(SchemaNotFoundYet, match=r"schema id\(s\) 5 not found at http://registry; waiting up to 60 s"):
        book.update([1, 5])
    now[0] += 59
    with pytest.raises(SchemaNotFoundYet):
        book.update([5])
    client.registered = True  # registered within the grace: decoded like any other id
    snapshot, _ = book.update([5])
    assert 5 in snapshot.writers and not snapshot.unknown

    with pytest.raises(SchemaNotFoundYet):
        book.update([6])
    now[0] += 60  # missing for the whole grace: final, its records are dead-lettered
    snapshot, _ = book.update([6])
    assert snapshot.unknown == {6}


def test_a_bounded_call_returns_its_result_or_raises_its_error():
    assert run_bounded(lambda: 42, 5, "the answer") == 42
    with pytest.raises(ZeroDivisionError):
        run_bounded(lambda: 1 / 0, 5, "a division")


def test_a_bounded_call_that_does_not_return_is_a_stalled_spark():
    started = time.monotonic()
    with pytest.raises(SparkStalled, match=r"batch 3's count did not finish within 0 s: the Spark driver is stuck"):
        run_bounded(lambda: time.sleep(30), 0.3, "batch 3's count")
    assert time.monotonic() - started < 5
