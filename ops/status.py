"""The pipeline at a glance, without Docker: services, topics, stream lag, dead letters, schemas, rows, DAG runs.

Usage:
    python -m ops.status                 # one report (`make status`)
    python -m ops.status --json          # the same data as JSON
    python -m ops.status --watch 5       # refresh every 5 seconds until Ctrl-C
    python -m ops.status --check         # exit 1 when a core service is down

Every section asks a public protocol (Kafka, the Confluent Schema Registry REST
API, CQL, HTTP), so the view works on the embedded stack and on
docker-compose.yml alike, pointed by the usual settings (KAFKA_BOOTSTRAP_SERVERS,
SCHEMA_REGISTRY_URL, ...). A service that is down is shown as "down" with the
reason instead of stopping the report: the view exists to be read while
something is broken. `--check` turns the core services (what `make up` starts:
Kafka, the registry, Cassandra, the data source) into an exit code for
scripts; Airflow and the streaming job are shown but optional, since
`make up` starts them only with `--all`.

Stream lag is read from the Spark checkpoint, not from a consumer group: the
Structured Streaming Kafka source keeps its offsets in `<checkpoint>/offsets/`
and marks a batch done in `<checkpoint>/commits/`; it never commits to Kafka.

Each section is a function returning a dataclass (what the tests call);
`render` turns a `StatusReport` into text.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import logging
import re
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core import dead_letter
from ops.airflow_api import AirflowApiError, AirflowClient, admin_password
from core.schema_registry import REGISTRY_TRANSPORT_ERRORS, is_not_found, make_client
from core.settings import Settings, load_settings

DAG_ID = "user_stream"
CORE_SERVICES = ("kafka", "schema-registry", "cassandra", "datasource")  # what `make up` starts
# Where the Spark job may leave its last StreamingQueryProgress as JSON (first found wins).
PROGRESS_FILE_CANDIDATES = ("{checkpoint}.progress.json", "{checkpoint}/progress.json", "{checkpoint}/../progress.json")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- Data the sections return ---------------------------------------------------------


@dataclass
class ServiceHealth:
    """One service: up or down, and why. pid/port/log come from the embedded launcher when it knows them."""

    name: str
    address: str
    up: bool
    detail: str
    core: bool | None = None  # None: decided by CORE_SERVICES
    pid: int | None = None
    port: int | None = None
    log: str | None = None
    version: str | None = None  # what the service reports of itself, where its probe learns it

    def __post_init__(self) -> None:
        if self.core is None:
            self.core = self.name in CORE_SERVICES


@dataclass
class TopicOffsets:
    """Earliest and end (next to be written) offset per partition."""

    topic: str
    earliest: dict[int, int] = field(default_factory=dict)
    latest: dict[int, int] = field(default_factory=dict)
    exists: bool = True
    error: str | None = None

    @property
    def messages(self) -> int:
        return sum(self.latest[p] - self.earliest.get(p, 0) for p in self.latest)


@dataclass
class Checkpoint:
    """What a Structured Streaming checkpoint says about Kafka offsets.

    `committed` holds the end offsets of the last batch with a commit file: the
    next offset the job will read per partition. `planned` is the newest offsets
    file, which runs ahead of `committed` while a batch is in flight.
    """

    path: str
    committed_batch: int | None
    planned_batch: int | None
    committed: dict[str, dict[int, int]]
    planned: dict[str, dict[int, int]]
    committed_at: float | None  # mtime of the newest commit file, seconds since the epoch


@dataclass
class PartitionLag:
    topic: str
    partition: int
    end_offset: int
    checkpoint_offset: int | None  # None: the job has not read this partition yet
    lag: int  # negative when the checkpoint is ahead of the topic (topic re-created?)


@dataclass
class StreamProgress:
    checkpoint_dir: str
    committed_batch: int | None = None
    in_flight_batch: int | None = None
    last_commit_age_seconds: float | None = None
    lag: list[PartitionLag] = field(default_factory=list)
    progress: dict[str, Any] | None = None
    progress_file: str | None = None
    error: str | None = None

    @property
    def total_lag(self) -> int | None:
        return sum(p.lag for p in self.lag) if self.lag else None


@dataclass
class DeadLetterCounts:
    topic: str
    by_stage: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    expected: int = 0
    complete: bool = True
    exists: bool = True
    error: str | None = None


@dataclass
class SubjectInfo:
    name: str
    versions: list[int]
    latest_id: int | None
    compatibility: str | None
    compatibility_source: str  # "subject" or "global"


@dataclass
class SchemaRegistryView:
    url: str
    global_compatibility: str | None = None
    subjects: list[SubjectInfo] = field(default_factory=list)
    error: str | None = None


@dataclass
class RowCount:
    table: str
    rows: int | None = None
    error: str | None = None


@dataclass
class DagRunInfo:
    run_id: str
    state: str
    run_type: str | None
    run_after: str | None
    start_date: str | None
    end_date: str | None


@dataclass
class DagRunsView:
    dag_id: str
    runs: list[DagRunInfo] = field(default_factory=list)
    total: int | None = None
    error: str | None = None


@dataclass
class StatusReport:
    generated_at: str
    services: list[ServiceHealth]
    topics: list[TopicOffsets]
    stream: StreamProgress
    dead_letters: DeadLetterCounts
    schemas: SchemaRegistryView
    cassandra: RowCount
    dag_runs: DagRunsView

    def core_down(self) -> list[str]:
        return [s.name for s in self.services if s.core and not s.up]


# --- Reasons, short enough for one line ---------------------------------------------------


def reason(exc: BaseException) -> str:
    """One readable line for why a call failed; the class name only when the message is empty."""
    if isinstance(exc, requests.Timeout) or type(exc).__name__.endswith("Timeout"):  # requests' or httpx's
        return "no answer before the timeout"
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return kafka_reason(exc.args[0].str())
    text = str(exc)
    # cassandra-driver: "Tried connecting to [...]. Last error: Connection refused"
    cause = re.search(r"Last error: ([^'\"\]]+)", text) or re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if cause:
        return cause.group(1).strip().rstrip(".").lower()
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def kafka_reason(message: str) -> str:
    """librdkafka's "host:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms ...)" → "connection refused"."""
    connect = re.search(r"Connect to \S+ failed: ([^(]+)", message)
    if connect:
        return connect.group(1).strip().lower()
    return re.sub(r"^\S+/bootstrap: ", "", message)


# --- Kafka -----------------------------------------------------------------------------------


class _KafkaErrors:
    """Collects librdkafka's error callbacks: they carry the real cause ("Connection refused")."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, error: KafkaError) -> None:
        self.messages.append(kafka_reason(error.str()))

    def cause(self, fallback: BaseException) -> str:
        specific = [m for m in self.messages if "brokers are down" not in m]
        return (specific or self.messages or [reason(fallback)])[0]


def _kafka_conf(settings: Settings, errors: _KafkaErrors, **extra: Any) -> dict[str, Any]:
    """Client conf for a status probe: errors go to `errors`, not to stderr, since the view shows them."""
    return {**settings.kafka_config(), "error_cb": errors, "log_level": 0, **extra}


def probe_kafka(settings: Settings, timeout: float) -> ServiceHealth:
    """A metadata request: answers only when a broker is reachable and serving."""
    errors = _KafkaErrors()
    admin = AdminClient(_kafka_conf(settings, errors))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # serves error_cb, which names the cause
        return ServiceHealth("kafka", settings.kafka_bootstrap_servers, False, errors.cause(exc))
    if not metadata.brokers:
        return ServiceHealth("kafka", settings.kafka_bootstrap_servers, False, "metadata lists no broker yet")
    user_topics = [t for t in metadata.topics if not t.startswith("_")]
    detail = f"{len(metadata.brokers)} broker(s), cluster {metadata.cluster_id}, {len(user_topics)} topic(s)"
    return ServiceHealth("kafka", settings.kafka_bootstrap_servers, True, detail)


def topic_offsets(settings: Settings, topics: list[str], timeout: float) -> list[TopicOffsets]:
    """Earliest and end offsets of every partition of `topics`, from one AdminClient.

    A topic that does not exist yet is reported as such, not as an error: the
    dead-letter topic, for one, appears only with the first dead letter.
    """
    errors = _KafkaErrors()
    admin = AdminClient(_kafka_conf(settings, errors))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)
        return [TopicOffsets(t, error=f"kafka down: {errors.cause(exc)}") for t in topics]

    results = []
    for topic in topics:
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None:
            results.append(TopicOffsets(topic, exists=False))
            continue
        partitions = sorted(topic_meta.partitions)
        try:
            results.append(
                TopicOffsets(
                    topic,
                    earliest=_list_offsets(admin, topic, partitions, OffsetSpec.earliest(), timeout),
                    latest=_list_offsets(admin, topic, partitions, OffsetSpec.latest(), timeout),
                )
            )
        except KafkaException as exc:
            results.append(TopicOffsets(topic, error=reason(exc)))
    return results


def _list_offsets(admin: AdminClient, topic: str, partitions: list[int], spec: OffsetSpec, timeout: float) -> dict[int, int]:
    futures = admin.list_offsets({TopicPartition(topic, p): spec for p in partitions}, request_timeout=timeout)
    return {tp.partition: future.result().offset for tp, future in futures.items()}


def dead_letter_counts(settings: Settings, timeout: float, scan_seconds: float) -> DeadLetterCounts:
    """Counts dead letters by `dead_letter.stage` header, reading the topic from beginning to end.

    A throwaway consumer with manual assignment and no commits, so no consumer
    group is left behind. Bounded by `scan_seconds`: a huge topic yields a
    partial count, flagged `complete=False`, rather than a hung status view.
    """
    topic = settings.dead_letter_topic
    errors = _KafkaErrors()
    consumer = Consumer(
        _kafka_conf(
            settings,
            errors,
            **{
                "group.id": f"userstream-status-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        return _scan_dead_letters(consumer, topic, timeout, scan_seconds)
    except KafkaException as exc:
        consumer.poll(0)
        return DeadLetterCounts(topic, complete=False, error=f"kafka down: {errors.cause(exc)}")
    finally:
        consumer.close()


def _scan_dead_letters(consumer: Consumer, topic: str, timeout: float, scan_seconds: float) -> DeadLetterCounts:
    metadata = consumer.list_topics(topic, timeout=timeout)
    topic_meta = metadata.topics.get(topic)
    if topic_meta is None or topic_meta.error is not None:
        return DeadLetterCounts(topic, exists=False)

    remaining: dict[int, int] = {}  # partition -> end offset still to reach
    assignment = []
    expected = 0
    for partition in sorted(topic_meta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if high > low:
            remaining[partition] = high
            assignment.append(TopicPartition(topic, partition, low))
            expected += high - low
    counts = DeadLetterCounts(topic, expected=expected)
    if not assignment:
        return counts

    consumer.assign(assignment)
    deadline = time.monotonic() + scan_seconds
    while remaining and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                remaining.pop(message.partition(), None)
                continue
            raise KafkaException(message.error())
        stage = dead_letter.read_headers(message.headers()).get(dead_letter.STAGE, "(no stage header)")
        counts.by_stage[stage] = counts.by_stage.get(stage, 0) + 1
        counts.scanned += 1
        if message.offset() + 1 >= remaining.get(message.partition(), 0):
            remaining.pop(message.partition(), None)
    counts.complete = not remaining
    return counts


# --- Spark checkpoint ---------------------------------------------------------------------


def read_log_entry(path: Path) -> list[str]:
    """The lines of one Spark metadata-log file after its "v<N>" version line.

    Spark's HDFSMetadataLog files (offsets/<batchId>, commits/<batchId>) start
    with "v1" and have no trailing newline.
    """
    lines = path.read_text(encoding="utf-8").split("\n")
    if not lines or not re.fullmatch(r"v\d+", lines[0].strip()):
        raise ValueError(f"{path}: not a Spark metadata log file (first line {lines[0][:20]!r}, expected 'v1')")
    return lines[1:]


def parse_offsets_entry(path: Path) -> dict[str, dict[int, int]]:
    """Kafka offsets of one offsets/<batchId> file: topic -> partition -> end offset of that batch.

    Line 1 after the version is the batch metadata (watermark, timestamp, conf);
    then one line per source in query order: the Kafka source's JSON
    `{"topic": {"0": 123}}`, another source's own JSON, or "-" for a source with
    no offset yet. Lines that are not topic/partition maps are skipped.
    """
    offsets: dict[str, dict[int, int]] = {}
    for line in read_log_entry(path)[1:]:
        line = line.strip()
        if not line or line == "-":
            continue
        source = json.loads(line)
        if not isinstance(source, dict):
            continue
        for topic, partitions in source.items():
            if isinstance(partitions, dict) and all(str(p).lstrip("-").isdigit() for p in partitions):
                offsets.setdefault(topic, {}).update({int(p): int(o) for p, o in partitions.items()})
    return offsets


def latest_batch(log_dir: Path) -> tuple[int, Path] | None:
    """Newest batch file of offsets/ or commits/; Spark's .crc and .tmp files are skipped."""
    if not log_dir.is_dir():
        return None
    batches = [(int(p.name), p) for p in log_dir.iterdir() if p.name.isdigit() and p.is_file()]
    return max(batches) if batches else None


def read_checkpoint(checkpoint_dir: Path) -> Checkpoint:
    """What the checkpoint says: newest committed batch, its offsets, and any batch in flight.

    Raises FileNotFoundError when there is no checkpoint (the job never ran).
    """
    offsets_dir = checkpoint_dir / "offsets"
    planned = latest_batch(offsets_dir)
    if planned is None:
        raise FileNotFoundError(f"no Spark checkpoint at {checkpoint_dir} (offsets/ is missing or empty)")
    committed = latest_batch(checkpoint_dir / "commits")
    committed_offsets: dict[str, dict[int, int]] = {}
    if committed is not None:
        committed_file = offsets_dir / str(committed[0])
        if committed_file.is_file():
            committed_offsets = parse_offsets_entry(committed_file)
    return Checkpoint(
        path=str(checkpoint_dir),
        committed_batch=committed[0] if committed else None,
        planned_batch=planned[0],
        committed=committed_offsets,
        planned=parse_offsets_entry(planned[1]),
        committed_at=committed[1].stat().st_mtime if committed else None,
    )


def compute_lag(checkpoint_offsets: dict[str, dict[int, int]], topics: list[TopicOffsets]) -> list[PartitionLag]:
    """Per-partition lag = end offset − checkpoint offset.

    A partition the checkpoint does not know yet lags by everything retained
    (end − earliest): Spark will start it from the beginning.
    """
    lags = []
    for topic in topics:
        if topic.error or not topic.exists:
            continue
        known = checkpoint_offsets.get(topic.topic, {})
        for partition, end in sorted(topic.latest.items()):
            position = known.get(partition)
            start = position if position is not None else topic.earliest.get(partition, 0)
            lags.append(PartitionLag(topic.topic, partition, end, position, end - start))
    return lags


def read_progress_file(checkpoint_dir: Path) -> tuple[dict[str, Any], str] | None:
    """The job's last StreamingQueryProgress, if it writes one next to the checkpoint."""
    for pattern in PROGRESS_FILE_CANDIDATES:
        path = Path(pattern.format(checkpoint=checkpoint_dir)).resolve()
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return (data if isinstance(data, dict) else {"value": data}), str(path)
    return None


def stream_progress(settings: Settings, topics: list[TopicOffsets], now: float | None = None) -> StreamProgress:
    """The streaming job's position and lag on the users topic, from its checkpoint."""
    checkpoint_dir = Path(settings.spark_checkpoint_dir)
    view = StreamProgress(str(checkpoint_dir))
    try:
        checkpoint = read_checkpoint(checkpoint_dir)
        found = read_progress_file(checkpoint_dir)
    except FileNotFoundError as exc:
        view.error = f"{exc}: the streaming job has not run yet (`make stream`)"
        return view
    except (OSError, ValueError) as exc:  # ValueError covers a half-written JSON line
        view.error = reason(exc)
        return view
    if found:
        view.progress, view.progress_file = found
    view.committed_batch = checkpoint.committed_batch
    if checkpoint.planned_batch != checkpoint.committed_batch:
        view.in_flight_batch = checkpoint.planned_batch
    if checkpoint.committed_at is not None:
        view.last_commit_age_seconds = max(0.0, (now or time.time()) - checkpoint.committed_at)
    users = [t for t in topics if t.topic == settings.users_topic]
    view.lag = compute_lag(checkpoint.committed, users)
    return view


# --- Schema Registry ----------------------------------------------------------------------


def _registry_client(settings: Settings, timeout: float):
    """The project's registry client with the probe's timeout and no retries: a status view reports, it does not wait."""
    return make_client(settings, max_retries=0, timeout=timeout)


# A registry that cannot be reached, or answers with an error.
REGISTRY_ERRORS = (*REGISTRY_TRANSPORT_ERRORS, SchemaRegistryError)


def probe_registry(settings: Settings, timeout: float) -> ServiceHealth:
    """GET /subjects: the cheapest call every Confluent-compatible registry serves."""
    try:
        subjects = _registry_client(settings, timeout).get_subjects()
    except REGISTRY_ERRORS as exc:
        return ServiceHealth("schema-registry", settings.schema_registry_url, False, reason(exc))
    return ServiceHealth("schema-registry", settings.schema_registry_url, True, f"{len(subjects)} subject(s)",
                         version=_registry_version(settings, timeout))


def _registry_version(settings: Settings, timeout: float) -> str | None:
    """The registry's own version where it says: Apicurio's system info, else Confluent's metadata endpoint.

    Neither is part of the Confluent schema API that SchemaRegistryClient
    speaks, hence plain requests. Only a label for the table: the registry
    already answered, so one that publishes no version is shown as "-".
    """
    base = settings.schema_registry_url.split("/apis/")[0].rstrip("/")
    for url in (f"{base}/apis/registry/v3/system/info", f"{settings.schema_registry_url.rstrip('/')}/v1/metadata/version"):
        try:
            response = requests.get(url, auth=settings.schema_registry_basic_auth(), timeout=timeout)
            if response.ok:
                return str(response.json()["version"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            continue
    return None


def schema_subjects(settings: Settings, timeout: float) -> SchemaRegistryView:
    """Subjects with their versions, latest schema id and compatibility (subject level, else global)."""
    view = SchemaRegistryView(settings.schema_registry_url)
    client = _registry_client(settings, timeout)
    try:
        view.global_compatibility = client.get_compatibility()
        for subject in sorted(client.get_subjects()):
            if info := _subject_info(client, subject, view.global_compatibility):
                view.subjects.append(info)
    except REGISTRY_ERRORS as exc:
        view.error = reason(exc)
    return view


def _subject_info(client: Any, subject: str, global_level: str | None) -> SubjectInfo | None:
    """One subject's row; None when it was deleted between the listing and this lookup."""
    try:
        versions = client.get_versions(subject)
        latest = client.get_version(subject, "latest")  # "latest" is never served from the client's cache
    except SchemaRegistryError as error:
        if is_not_found(error):
            return None
        raise
    try:
        level, source = client.get_compatibility(subject), "subject"
    except SchemaRegistryError as error:
        if not is_not_found(error):
            raise
        level, source = global_level, "global"  # no subject-level rule: the global one applies
    return SubjectInfo(subject, sorted(versions), latest.schema_id, level, source)


# --- Cassandra ----------------------------------------------------------------------------


def _cassandra_session(settings: Settings, timeout: float):
    """A short-lived session with the timeouts of a status probe; the caller shuts the cluster down."""
    from core.cassandra_schema import cassandra_cluster

    cluster = cassandra_cluster(settings, timeout)
    return cluster, cluster.connect()


def _cassandra_errors() -> tuple[type[BaseException], ...]:
    from cassandra import DriverException, RequestExecutionException
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, DriverException, RequestExecutionException, OSError)


def probe_cassandra(settings: Settings, timeout: float) -> ServiceHealth:
    """SELECT release_version FROM system.local: a CQL round trip on the node."""
    address = f"{settings.cassandra_hosts}:{settings.cassandra_port}"
    cluster = None
    try:
        cluster, session = _cassandra_session(settings, timeout)
        version = session.execute("SELECT release_version FROM system.local").one().release_version
    except _cassandra_errors() as exc:
        return ServiceHealth("cassandra", address, False, _cassandra_reason(exc))
    finally:
        if cluster is not None:
            cluster.shutdown()
    return ServiceHealth("cassandra", address, True, f"Cassandra {version}", version=version)


def _cassandra_reason(exc: BaseException) -> str:
    """NoHostAvailable wraps one error per host; the first one is the cause."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return reason(next(iter(errors.values())))
    return reason(exc)


def cassandra_rows(settings: Settings, timeout: float) -> RowCount:
    """SELECT count(*) of the pipeline's table: a full scan, fine for demo sizes, bounded by `timeout`."""
    keyspace, table = settings.cassandra_keyspace, settings.cassandra_table
    view = RowCount(f"{keyspace}.{table}")
    if not (_IDENTIFIER.match(keyspace) and _IDENTIFIER.match(table)):
        view.error = f"not a CQL identifier: {keyspace}.{table}"
        return view
    cluster = None
    try:
        cluster, session = _cassandra_session(settings, timeout)
        view.rows = session.execute(f"SELECT count(*) FROM {keyspace}.{table}").one()[0]
    except _cassandra_errors() as exc:
        view.error = _cassandra_reason(exc)
        missing = re.search(r'message="([^"]*does not exist[^"]*)"', str(exc))
        if missing:  # the node is fine; the schema step has not run
            view.error = f"{missing.group(1)}; create it with `make cassandra-schema`"
    finally:
        if cluster is not None:
            cluster.shutdown()
    return view


# --- Data source and Airflow ---------------------------------------------------------------


def probe_datasource(settings: Settings, timeout: float) -> ServiceHealth:
    """One user from the API: works for randomuser.me and for the local stand-in alike."""
    try:
        response = requests.get(settings.datasource_url, params={"results": 1, "inc": "login"}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        return ServiceHealth("datasource", settings.datasource_url, False, reason(exc))
    if "error" in body or not body.get("results"):
        return ServiceHealth("datasource", settings.datasource_url, False, f"API error: {body.get('error')}")
    version = (body.get("info") or {}).get("version")
    return ServiceHealth("datasource", settings.datasource_url, True, "serves users", version=version)


def probe_airflow(settings: Settings, timeout: float, require: tuple[str, ...] = ()) -> ServiceHealth:
    """GET /api/v2/monitor/health: needs no login and reports each Airflow component.

    A component the api-server does not report counts as fine, unless it is in
    `require` (the launcher waits for the scheduler and dag-processor this way).
    """
    url = settings.airflow_url.rstrip("/") + "/api/v2/monitor/health"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        health = response.json()
    except (requests.RequestException, ValueError) as exc:
        return ServiceHealth("airflow", settings.airflow_url, False, reason(exc))
    parts = {name: (value or {}).get("status") for name, value in health.items() if isinstance(value, dict)}
    unhealthy = sorted(name for name, state in parts.items() if state not in ("healthy", None))
    unhealthy += [name for name in require if parts.get(name) != "healthy" and name not in unhealthy]
    detail = ", ".join(f"{name} {state}" for name, state in sorted(parts.items()))
    return ServiceHealth("airflow", settings.airflow_url, not unhealthy, detail, version=_airflow_version(settings, timeout))


def _airflow_version(settings: Settings, timeout: float) -> str | None:
    """GET /api/v2/version (public, like the health endpoint); only a label, "-" when it does not answer."""
    try:
        response = requests.get(settings.airflow_url.rstrip("/") + "/api/v2/version", timeout=timeout)
        return str(response.json()["version"]) if response.ok else None
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


def airflow_password(settings: Settings) -> str | None:
    """The admin password the demo uses too (ops.airflow_api), or None when there is none to be had."""
    try:
        return admin_password(settings)
    except AirflowApiError:
        return None


def dag_runs(settings: Settings, timeout: float, dag_id: str = DAG_ID, limit: int = 5) -> DagRunsView:
    """The newest runs of the DAG through Airflow's REST API v2 (ops.airflow_api logs in)."""
    view = DagRunsView(dag_id)
    password = airflow_password(settings)
    if password is None:
        view.error = (
            "no Airflow password: set AIRFLOW_ADMIN_PASSWORD, or start Airflow with the launcher "
            f"(it writes {Path(settings.stack_home) / 'airflow'}/simple_auth_manager_passwords.json.generated)"
        )
        return view
    try:
        body = AirflowClient(settings, timeout).dag_runs(dag_id, limit)
    except AirflowApiError as exc:
        if exc.status_code == 401:
            view.error = f"Airflow rejected the password of user {settings.airflow_admin_user!r}"
        elif exc.status_code == 404:
            view.error = f"DAG {dag_id} not found (not parsed yet?)"
        else:  # no HTTP answer: the transport error underneath says why in fewer words
            view.error = reason(exc.__cause__ or exc)
        return view
    except (ValueError, KeyError) as exc:
        view.error = reason(exc)
        return view
    view.total = body.get("total_entries")
    view.runs = [
        DagRunInfo(
            run_id=run.get("dag_run_id") or run.get("run_id", "?"),
            state=run.get("state", "?"),
            run_type=run.get("run_type"),
            run_after=run.get("run_after") or run.get("logical_date"),
            start_date=run.get("start_date"),
            end_date=run.get("end_date"),
        )
        for run in body.get("dag_runs", [])
    ]
    return view


# --- The launcher's view of its processes ------------------------------------------------------

# Launcher service name -> the name a probe reports under.
LAUNCHER_NAMES = {"registry": "schema-registry", "stream": "spark-stream"}


def launcher_processes(settings: Settings) -> dict[str, dict[str, Any]]:
    """pid/port/log per service the embedded launcher (stack/) started, read from its pid files.

    Only services with a pid file appear, and the streaming job always (it has
    no port to probe, so a stopped job must still show as down): under
    docker-compose or against remote services there are none, and the probes
    alone tell the state. The
    launcher's own `status()` is not called because it probes every service
    again; the probes here already did.
    """
    if importlib.util.find_spec("stack.launcher") is None:  # the package without the launcher
        return {}
    from stack.launcher import read_pid
    from stack.layout import Layout
    from stack.services import SERVICES, installed_version

    layout = Layout(Path(settings.stack_home))
    if not layout.run.exists():  # the launcher never ran here: nothing of ours to show
        return {}
    rows = {}
    for name, service in SERVICES.items():
        if not layout.pidfile(name).exists() and name != "stream":
            continue  # probed services speak for themselves; the job has no probe, so it always gets a row
        ports = list(service.ports(settings).values())
        rows[LAUNCHER_NAMES.get(name, name)] = {
            "pid": read_pid(layout, name),  # None when the process has exited
            "port": ports[0] if ports else None,
            "log": str(layout.log(name)),
            "version": installed_version(layout, name),  # what the launcher runs, for services that cannot say
        }
    return rows


def merge_launcher(health: list[ServiceHealth], processes: dict[str, dict[str, Any]]) -> list[ServiceHealth]:
    """Adds the launcher's pid/port/log to the probe results; launcher services without a probe get a row of their own.

    The streaming job has no port to probe: its row says whether the process
    the launcher started is still alive, and where its log is.
    """
    probed = {service.name for service in health}
    for service in health:
        info = processes.get(service.name, {})
        service.pid, service.port, service.log = info.get("pid"), info.get("port"), info.get("log")
        service.version = service.version or info.get("version")
    for name, info in sorted(processes.items()):
        if name in probed:
            continue
        alive = info.get("pid") is not None
        detail = "process running" if alive else "not running (`make stream` starts it; see its log)"
        health.append(ServiceHealth(name, "-", alive, detail, core=False, **info))
    return health


# --- Collect and render ----------------------------------------------------------------------


def collect(settings: Settings, timeout: float = 3.0, scan_seconds: float = 10.0) -> StatusReport:
    """Every section, probed in parallel so that down services cost one timeout, not one each."""
    topics = [settings.users_topic, settings.dead_letter_topic]
    probes = (probe_kafka, probe_registry, probe_cassandra, probe_datasource, probe_airflow)
    with ThreadPoolExecutor(max_workers=10, thread_name_prefix="status") as pool:
        health: list[Future] = [pool.submit(probe, settings, timeout) for probe in probes]
        offsets = pool.submit(topic_offsets, settings, topics, timeout)
        letters = pool.submit(dead_letter_counts, settings, timeout, scan_seconds)
        schemas = pool.submit(schema_subjects, settings, timeout)
        rows = pool.submit(cassandra_rows, settings, timeout)
        runs = pool.submit(dag_runs, settings, timeout)
        topic_list = offsets.result()
        return StatusReport(
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            services=merge_launcher([f.result() for f in health], launcher_processes(settings)),
            topics=topic_list,
            stream=stream_progress(settings, topic_list),
            dead_letters=letters.result(),
            schemas=schemas.result(),
            cassandra=rows.result(),
            dag_runs=runs.result(),
        )


def _table(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
    cells = [[("-" if c is None else str(c)) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_services(services: list[ServiceHealth]) -> list[str]:
    with_launcher = any(s.pid or s.port or s.log for s in services)
    headers = ["SERVICE", "STATE", "VERSION", "ADDRESS", "DETAIL"] + (["PID", "LOG"] if with_launcher else [])
    rows = []
    for s in services:
        state = "up" if s.up else ("DOWN" if s.core else "down")
        row = [s.name, state, s.version, s.address, s.detail] + ([s.pid, s.log] if with_launcher else [])
        rows.append(row)
    return ["Services", *_table(headers, rows)]


def render_topics(topics: list[TopicOffsets]) -> list[str]:
    lines = ["Topics"]
    rows = []
    for t in topics:
        if t.error:
            lines.append(f"  {t.topic}: unavailable: {t.error}")
        elif not t.exists:
            lines.append(f"  {t.topic}: does not exist yet")
        else:
            rows += [[t.topic, p, t.earliest.get(p), t.latest[p], t.latest[p] - t.earliest.get(p, 0)] for p in sorted(t.latest)]
    if rows:
        lines[1:1] = _table(["TOPIC", "PARTITION", "EARLIEST", "END", "MESSAGES"], rows)
    return lines


def render_stream(stream: StreamProgress) -> list[str]:
    lines = [f"Stream (Spark checkpoint {stream.checkpoint_dir})"]
    if stream.error:
        return lines + [f"  unavailable: {stream.error}"]
    batch = "none yet" if stream.committed_batch is None else f"{stream.committed_batch} ({_age(stream.last_commit_age_seconds)})"
    lines.append(f"  last committed batch: {batch}")
    if stream.in_flight_batch is not None:
        lines.append(f"  batch in flight: {stream.in_flight_batch}")
    if stream.lag:
        rows = [[p.topic, p.partition, p.end_offset, p.checkpoint_offset, p.lag] for p in stream.lag]
        lines += _table(["TOPIC", "PARTITION", "END", "CHECKPOINT", "LAG"], rows)
        lines.append(f"  total lag: {stream.total_lag}")
        if any(p.lag < 0 for p in stream.lag):
            lines.append("  note: the checkpoint is ahead of the topic; was the topic deleted and re-created?")
    if stream.progress:
        # Spark's StreamingQueryProgress names, which spark/progress.py also writes.
        keys = ("timestamp", "batchId", "numInputRows", "inputRowsPerSecond", "processedRowsPerSecond")
        summary = ", ".join(f"{k}={stream.progress[k]}" for k in keys if k in stream.progress)
        lines.append(f"  last progress: {summary or 'present'} ({stream.progress_file})")
        totals = stream.progress.get("totals")
        if isinstance(totals, dict) and totals:
            lines.append("  totals since the first batch: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
    return lines


def render_dead_letters(counts: DeadLetterCounts) -> list[str]:
    lines = [f"Dead letters ({counts.topic})"]
    if counts.error:
        return lines + [f"  unavailable: {counts.error}"]
    if not counts.exists:
        return lines + ["  topic does not exist yet: no dead letters"]
    if not counts.by_stage:
        return lines + ["  none"]
    lines += _table(["STAGE", "COUNT"], [[stage, n] for stage, n in sorted(counts.by_stage.items())] + [["total", counts.scanned]])
    if not counts.complete:
        lines.append(f"  partial: scanned {counts.scanned} of {counts.expected} before the time limit")
    return lines


def render_schemas(view: SchemaRegistryView) -> list[str]:
    lines = [f"Schemas ({view.url}; global compatibility {view.global_compatibility or '-'})"]
    if view.error:
        return lines + [f"  unavailable: {view.error}"]
    if not view.subjects:
        return lines + ["  no subjects registered (run `make register`)"]
    rows = [
        [s.name, ",".join(map(str, s.versions)), s.latest_id, f"{s.compatibility or '-'} ({s.compatibility_source})"]
        for s in view.subjects
    ]
    return lines + _table(["SUBJECT", "VERSIONS", "LATEST ID", "COMPATIBILITY"], rows)


def render_cassandra(view: RowCount) -> list[str]:
    if view.error:
        return [f"Cassandra {view.table}", f"  unavailable: {view.error}"]
    return [f"Cassandra {view.table}", f"  {view.rows} row(s)"]


def render_dag_runs(view: DagRunsView) -> list[str]:
    lines = [f"DAG runs ({view.dag_id}, newest first)"]
    if view.error:
        return lines + [f"  unavailable: {view.error}"]
    if not view.runs:
        return lines + ["  no runs yet"]
    rows = [[r.run_id, r.state, r.run_type, r.run_after, r.start_date, r.end_date] for r in view.runs]
    return lines + _table(["RUN ID", "STATE", "TYPE", "RUN AFTER", "START", "END"], rows)


def render(report: StatusReport) -> str:
    """The report as text, one block per section."""
    blocks = [
        [f"userstream status at {report.generated_at}"],
        render_services(report.services),
        render_topics(report.topics),
        render_stream(report.stream),
        render_dead_letters(report.dead_letters),
        render_schemas(report.schemas),
        render_cassandra(report.cassandra),
        render_dag_runs(report.dag_runs),
    ]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def to_json(report: StatusReport) -> str:
    data = dataclasses.asdict(report)
    data["stream"]["total_lag"] = report.stream.total_lag
    data["core_down"] = report.core_down()
    return json.dumps(data, indent=2, default=str)


# --- Command line ------------------------------------------------------------------------------


def main(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """One report (or one per `--watch` interval); 1 with `--check` when a core service is down."""
    settings = settings or load_settings()
    while True:
        report = collect(settings, timeout=args.timeout, scan_seconds=args.scan_seconds)
        output = to_json(report) if args.json else render(report)
        if args.watch and sys.stdout.isatty():
            sys.stdout.write("\033[2J\033[H")  # clear the screen between refreshes
        sys.stdout.write(output)
        sys.stdout.flush()
        if not args.watch:
            break
        time.sleep(args.watch)
    down = report.core_down()
    if args.check and down:
        print(f"status: core service(s) down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.status", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds until Ctrl-C")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a core service (Kafka, registry, Cassandra, data source) is down")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds each probe may wait (default 3)")
    parser.add_argument("--scan-seconds", type=float, default=10.0,
                        help="longest time spent counting dead letters (default 10)")
    args = parser.parse_args(argv)
    if args.watch is not None and args.watch <= 0:
        parser.error("--watch needs a positive number of seconds")
    return args


if __name__ == "__main__":
    # The driver logs a warning per unreachable host; the report already says the host is down.
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    try:
        sys.exit(main(parse_args()))
    except KeyboardInterrupt:  # Ctrl-C ends --watch
        sys.exit(0)
