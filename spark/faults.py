"""Which failures are transient, and how the job rides them out instead of dying.

A failure is TRANSIENT when the service behind it is briefly away: Cassandra
down or overloaded, the registry unreachable (or still missing a schema id it
will have in a moment), a Kafka broker restarting. The job retries those with
backoff for up to STREAM_FAULT_RETRY_SECONDS, says so in its log and its state
file (`waiting`, with the service), and carries on where it was: every step
of a batch is idempotent (Cassandra upserts; dead letters are keyed by their
source position, so a retry at worst duplicates one). Past the bound it gives
up with `ServiceUnavailable`, whose message names the service.

Everything else is not transient: retrying would fail the same way. A record
Cassandra refuses is split off and dead-lettered (spark/sink.py); anything
else stops the job with a `failed` state that says what to do.

The classification has to work on two kinds of exception: Python ones from
the driver-side clients (confluent-kafka, cassandra-driver, the registry
client), and Java ones that reach Python as a Py4JJavaError (or a pyspark
CapturedException) from Spark, the Cassandra connector and Kafka's Java
client. Java ones are recognised by class names and messages anywhere in
their cause chain, because Spark wraps a task's exception in a SparkException
whose message carries the original's text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.schema_registry.error import SchemaRegistryError
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from core.cassandra_schema import CassandraUnavailable
from core.job_state import FAILED, RUNNING, WAITING, write_job_state
from core.schema_registry import REGISTRY_TRANSPORT_ERRORS
from core.topics import TopicError
from spark.registry import RegistryError, RegistryUnreachable, SchemaNotFoundYet
from spark.sink import SchemaMismatchError

log = logging.getLogger(__name__)

CASSANDRA, REGISTRY, KAFKA = "cassandra", "registry", "kafka"
T = TypeVar("T")

# Text in a Java exception chain that means "Cassandra is away", not "this row is bad".
CASSANDRA_MARKERS = (
    "Failed to open native connection to Cassandra",
    "AllNodesFailedException", "NoNodeAvailableException", "No node was available",
    "Could not reach any contact point", "All host(s) tried for query failed",
    "DriverTimeoutException", "Query timed out after",
    "ClosedConnectionException", "ConnectionInitException", "HeartbeatException", "BusyConnectionException",
    "WriteTimeoutException", "ReadTimeoutException", "UnavailableException", "OverloadedException",
    "BootstrappingException", "Cassandra timeout during", "Not enough replicas available",
    # The connector's schema refresh while the node is away (seen in the fault suite's 30 s outage).
    "Control channel not available",
)
# Text that means "a Kafka broker is away": Kafka's Java client names its retriable errors.
KAFKA_MARKERS = (
    "org.apache.kafka.common.errors.TimeoutException", "org.apache.kafka.common.errors.NetworkException",
    "org.apache.kafka.common.errors.DisconnectException", "BrokerNotAvailableException",
    "LeaderNotAvailableException", "NotLeaderOrFollowerException", "NotEnoughReplicasException",
    "CoordinatorNotAvailableException", "Timed out waiting for a node assignment",
    "Timed out waiting to send the call",
    "Cannot fetch record for offset",  # Spark's Kafka consumer in a task (a java.util.concurrent.TimeoutException)
)
# Text that means "a connection failed", whichever service it was: the step's own service is meant.
CONNECTION_MARKERS = ("java.net.ConnectException", "java.net.SocketTimeoutException", "Connection refused",
                      "java.util.concurrent.TimeoutException")

# librdkafka error codes for "the cluster or a broker is away" (besides KafkaError.retriable()).
_KAFKA_TRANSIENT_CODES = {
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT,
    KafkaError._WAIT_COORD, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.BROKER_NOT_AVAILABLE, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
}


class ServiceUnavailable(RuntimeError):
    """A service stayed unreachable for longer than the job rides out (STREAM_FAULT_RETRY_SECONDS)."""

    def __init__(self, service: str, seconds: float, cause: BaseException):
        super().__init__(f"{service} still unavailable after {seconds:.0f} s of retries "
                         f"(STREAM_FAULT_RETRY_SECONDS): {describe(cause)}")
        self.service = service
        self.cause = cause


def _cassandra_driver_errors() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, Timeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    # Timeout: ReadTimeout and WriteTimeout, the replicas did not answer in time.
    return NoHostAvailable, OperationTimedOut, Timeout, Unavailable


CASSANDRA_DRIVER_ERRORS = _cassandra_driver_errors()


class SparkStalled(RuntimeError):
    """A Spark call that should take seconds did not return: the JVM is stuck, and only a new one helps."""


def run_bounded(action: Callable[[], T], seconds: float, what: str) -> T:
    """`action()`, or SparkStalled after `seconds` (the call is left behind in its thread).

    For a call into a JVM that already showed it is stuck (its listener bus
    held back a batch's counts): a job blocked forever is never restarted,
    while one that fails exits, and its supervisor starts a fresh JVM that
    redoes the batch from the checkpoint.
    """
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = action()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=call, name=f"bounded: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise SparkStalled(f"{what} did not finish within {seconds:.0f} s: the Spark driver is stuck; "
                           "the job exits so that it is restarted with a fresh JVM")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def java_chain(exc: BaseException) -> list[tuple[str, str]]:
    """(class name, message) of the Java exception behind a Py4JJavaError or CapturedException, outermost first."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    chain: list[tuple[str, str]] = []
    while java is not None and len(chain) < 20:
        try:
            chain.append((str(java.getClass().getName()), str(java.getMessage() or "")))
            java = java.getCause()
        except Exception:  # the JVM is gone (py4j error): classify on the Python text alone
            break
    return chain


def error_text(exc: BaseException) -> str:
    """Everything the classification may match: the Python text and every Java cause's class and message."""
    parts = [f"{type(exc).__name__}: {exc}"]
    parts += [f"{name}: {message}" for name, message in java_chain(exc)]
    parts.append(str(getattr(exc, "stackTrace", "") or ""))  # a CapturedException's JVM trace, with its causes
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        parts.append(error_text(cause))
    return "\n".join(parts)


def describe(exc: BaseException, limit: int = 300) -> str:
    """One short line a person can read: the innermost Java cause with a message, else the Python exception."""
    chain = [(name, message) for name, message in java_chain(exc) if message.strip()]
    if chain:
        name, message = chain[-1]
        text = f"{name.rsplit('.', 1)[-1]}: {message}"
    else:
        text = str(exc) if is_ours(exc) else f"{type(exc).__name__}: {exc}"
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    text = text.split(" Please check the executor logs", 1)[0]  # the connector's boilerplate
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_ours(exc: BaseException) -> bool:
    """Raised by this project, with a message that already names the service and what to do."""
    return type(exc).__module__.split(".")[0] in ("spark", "core")


def _kafka_error_transient(exc: BaseException) -> bool:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return error is not None and (error.retriable() or error.code() in _KAFKA_TRANSIENT_CODES)


def transient_service(exc: BaseException, default: str | None = None) -> str | None:
    """The service whose absence caused `exc` ("cassandra", "registry", "kafka"), or None if it is not transient.

    `default` is the service the failing step talks to; it names plain
    connection failures, which do not say whom they tried to reach.
    """
    if isinstance(exc, ServiceUnavailable):
        return None  # already ridden out as long as allowed
    if isinstance(exc, (RegistryUnreachable, SchemaNotFoundYet, *REGISTRY_TRANSPORT_ERRORS)):
        return REGISTRY
    if isinstance(exc, SchemaRegistryError):
        return REGISTRY if exc.http_status_code in (408, 429) or exc.http_status_code >= 500 else None
    if isinstance(exc, (CassandraUnavailable, *CASSANDRA_DRIVER_ERRORS)):
        return CASSANDRA
    if isinstance(exc, KafkaException):
        return KAFKA if _kafka_error_transient(exc) else None
    if isinstance(exc, TopicError):
        return KAFKA if isinstance(exc.__cause__, KafkaException) and _kafka_error_transient(exc.__cause__) else None
    if isinstance(exc, (RegistryError, SchemaMismatchError)):
        return None
    text = error_text(exc)
    if any(marker in text for marker in CASSANDRA_MARKERS):
        return CASSANDRA
    if any(marker in text for marker in KAFKA_MARKERS):
        return KAFKA
    if default and any(marker in text for marker in CONNECTION_MARKERS):
        return default
    return None


class FaultRider:
    """Runs an action, retrying transient failures with backoff; past the bound, raises ServiceUnavailable.

    `on_wait(service, detail)` is called before each retry and `on_recover()`
    once the action succeeds after a wait: the job writes its state file there.
    `reset[service]()`, when given, is called before each retry of a failure
    of that service: it drops client state the outage may have left broken.
    """

    def __init__(self, bound_seconds: float, on_wait: Callable[[str, str], None] = lambda s, d: None,
                 on_recover: Callable[[], None] = lambda: None, max_backoff: float = 15.0,
                 reset: dict[str, Callable[[], None]] | None = None):
        self.bound = bound_seconds
        self.on_wait = on_wait
        self.on_recover = on_recover
        self.max_backoff = max_backoff
        self.reset = reset or {}

    def call(self, service: str, action: Callable[[], T], what: str,
             healthy_since: Callable[[], float] | None = None) -> T:
        """`action()` until it succeeds or fails for good; `service` is whom `action` talks to.

        `healthy_since()` (monotonic seconds) restarts the clock when the
        action made progress between failures (a long-running query that dies twice a day).
        """
        waited_for: str | None = None

        def stop(state: RetryCallState) -> bool:
            started = max(state.start_time, healthy_since() if healthy_since else 0.0)
            return time.monotonic() - started >= self.bound

        def before_sleep(state: RetryCallState) -> None:
            nonlocal waited_for
            exc = state.outcome.exception()
            who = waited_for = transient_service(exc, service) or service
            detail = describe(exc)
            log.warning("%s: %s unavailable, retry %d in %.1f s (gives up after %.0f s): %s",
                        what, who, state.attempt_number, state.next_action.sleep, self.bound, detail)
            self.on_wait(who, f"{what}: {detail}")
            if who in self.reset:
                self.reset[who]()

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: transient_service(exc, service) is not None),
            stop=stop,
            wait=wait_exponential(multiplier=0.5, min=0.5, max=self.max_backoff),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result = retrying(action)
        except Exception as exc:
            who = transient_service(exc, service)
            if who is not None:
                raise ServiceUnavailable(who, self.bound, exc) from exc
            raise
        if waited_for is not None:
            log.info("%s: %s is back, carrying on", what, waited_for)
            self.on_recover()
        return result


def hint(exc: BaseException) -> str:
    """What a person should do after the job stopped on `exc`."""
    if isinstance(exc, ServiceUnavailable):
        where = {CASSANDRA: "Cassandra", REGISTRY: "the Schema Registry", KAFKA: "Kafka"}[exc.service]
        return (f"Start {where} (`make up`; `python -m stack status` shows it), then restart the job (`make stream`): "
                "it resumes from its checkpoint and loses nothing")
    if isinstance(exc, SchemaMismatchError):
        return "Change the table as the message says, then restart the job (`make stream`); the batch is decoded again"
    if isinstance(exc, RegistryError):
        return "Fix the registry as the message says (`make register`), then restart the job (`make stream`)"
    return ("Read the job's log (.stack/logs/stream.log) for the cause, then restart the job (`make stream`); "
            "the batch is redone from the checkpoint")


def failure_error(exc: BaseException, batch_id: int | None, offsets: dict[str, Any] | None) -> dict[str, Any]:
    """The `error` of a `failed` job state (core/job_state.py)."""
    chain = java_chain(exc)
    cls = chain[-1][0].rsplit(".", 1)[-1] if chain else type(exc).__name__
    return {"class": cls, "message": describe(exc), "batch_id": batch_id, "offsets": offsets or {}, "hint": hint(exc)}


class StateReporter:
    """Keeps the job state file (core/job_state.py) in step with what the job is doing."""

    def __init__(self, path: Path):
        self.path = path
        self.state: str | None = None

    def running(self) -> None:
        if self.state != RUNNING:
            write_job_state(self.path, RUNNING)
            self.state = RUNNING

    def waiting(self, service: str, detail: str) -> None:
        write_job_state(self.path, WAITING, service=service, detail=detail)
        self.state = WAITING

    def failed(self, error: dict[str, Any]) -> None:
        write_job_state(self.path, FAILED, error=error)
        self.state = FAILED
