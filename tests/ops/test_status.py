"""Tests of ops.status: checkpoint parsing and lag (pure), rendering, down services, real services.

The checkpoint tests write Spark's on-disk format byte for byte: HDFSMetadataLog
files `offsets/<batchId>` ("v1", the batch metadata JSON, one line per source,
no trailing newline; "-" for a source without an offset) and
`commits/<batchId>` ("v1", `{"nextBatchWatermarkMs":0}`), next to the `.crc`
and `.tmp` files Hadoop's filesystem leaves, which the reader must ignore.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from core import dead_letter
from ops import status
from core.settings import Settings
from ops.status import (
    DagRunsView,
    DeadLetterCounts,
    RowCount,
    SchemaRegistryView,
    ServiceHealth,
    StatusReport,
    StreamProgress,
    TopicOffsets,
)
from tests.ports import closed_port

BATCH_METADATA = {
    "batchWatermarkMs": 0,
    "batchTimestampMs": 1732500000000,
    "conf": {"spark.sql.shuffle.partitions": "4", "spark.sql.streaming.multipleWatermarkPolicy": "min"},
}


def settings_for(**overrides) -> Settings:
    """Settings from defaults plus overrides only: no .env, no environment leaking in."""
    names = {name.upper() for name in Settings.model_fields}
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.upper() in names}
    try:
        return Settings(_env_file=None, **overrides)
    finally:
        os.environ.update(saved)


def write_offsets(checkpoint: Path, batch: int, *sources: dict | None) -> None:
    """offsets/<batch> as Spark writes it, plus its .crc sibling."""
    lines = ["v1", json.dumps(BATCH_METADATA, separators=(",", ":"))]
    lines += ["-" if s is None else json.dumps(s, separators=(",", ":")) for s in sources]
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "offsets" / str(batch)).write_text("\n".join(lines))
    (checkpoint / "offsets" / f".{batch}.crc").write_bytes(b"crc\x00\x01")


def write_commit(checkpoint: Path, batch: int, mtime: float | None = None) -> None:
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    path = checkpoint / "commits" / str(batch)
    path.write_text('v1\n{"nextBatchWatermarkMs":0}')
    (checkpoint / "commits" / f".{batch}.crc").write_bytes(b"crc")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def users_offsets(**latest: int) -> TopicOffsets:
    """TopicOffsets for topic "users" from p0=..., p1=... keyword arguments (earliest 0)."""
    end = {int(k[1:]): v for k, v in latest.items()}
    return TopicOffsets("users", earliest={p: 0 for p in end}, latest=end)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A checkpoint with batches 0..2 planned and 0..1 committed (batch 2 in flight)."""
    cp = tmp_path / "spark-checkpoints" / "users"
    (cp / "metadata").parent.mkdir(parents=True)
    (cp / "metadata").write_text('{"id":"4c3e1f0e-0000-4000-8000-000000000000"}')
    write_offsets(cp, 0, {"users": {"0": 10, "1": 7, "2": 0}})
    write_offsets(cp, 1, {"users": {"2": 5, "1": 12, "0": 20}})
    write_offsets(cp, 2, {"users": {"0": 30, "1": 12, "2": 9}})
    write_commit(cp, 0)
    write_commit(cp, 1, mtime=1_000_000.0)
    (cp / "offsets" / ".3.4b8a.tmp").write_text("v1\n")  # a half-written file Spark has not renamed yet
    return cp


# --- Checkpoint parsing ---------------------------------------------------------------------


def test_parse_offsets_entry_reads_the_kafka_source_line(checkpoint):
    assert status.parse_offsets_entry(checkpoint / "offsets" / "1") == {"users": {0: 20, 1: 12, 2: 5}}


def test_parse_offsets_entry_skips_void_and_non_kafka_sources(tmp_path):
    # Three sources: none yet ("-"), a rate source, and Kafka over two topics.
    write_offsets(
        tmp_path, 0, None, {"0": {"value": 41, "runTimeMs": 1732500000000}}, {"users": {"0": 3}, "other": {"1": 8}}
    )
    assert status.parse_offsets_entry(tmp_path / "offsets" / "0") == {"users": {0: 3}, "other": {1: 8}}


def test_parse_offsets_entry_rejects_a_file_without_version_line(tmp_path):
    (tmp_path / "offsets").mkdir()
    (tmp_path / "offsets" / "0").write_text('{"users":{"0":1}}')
    with pytest.raises(ValueError, match="not a Spark metadata log file"):
        status.parse_offsets_entry(tmp_path / "offsets" / "0")


def test_latest_batch_ignores_crc_and_tmp_files(checkpoint):
    batch, path = status.latest_batch(checkpoint / "offsets")
    assert (batch, path.name) == (2, "2")


def test_latest_batch_compares_numbers_not_strings(tmp_path):
    for batch in (2, 9, 10):
        write_offsets(tmp_path, batch, {"users": {"0": batch}})
    assert status.latest_batch(tmp_path / "offsets")[0] == 10


def test_read_checkpoint_uses_the_last_committed_batch(checkpoint):
    cp = status.read_checkpoint(checkpoint)
    assert cp.committed_batch == 1
    assert cp.planned_batch == 2
    assert cp.committed == {"users": {0: 20, 1: 12, 2: 5}}
    assert cp.planned == {"users": {0: 30, 1: 12, 2: 9}}
    assert cp.committed_at == 1_000_000.0


def test_read_checkpoint_without_commits(tmp_path):
    write_offsets(tmp_path, 0, {"users": {"0": 4}})
    cp = status.read_checkpoint(tmp_path)
    assert cp.committed_batch is None and cp.committed == {} and cp.planned_batch == 0


def test_read_checkpoint_of_a_job_that_never_ran(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Spark checkpoint"):
        status.read_checkpoint(tmp_path / "missing")


# --- Lag ----------------------------------------------------------------------------------------


def test_lag_is_end_offset_minus_checkpoint_offset():
    lags = status.compute_lag({"users": {0: 20, 1: 12, 2: 5}}, [users_offsets(p0=25, p1=12, p2=9)])
    assert [(p.partition, p.end_offset, p.checkpoint_offset, p.lag) for p in lags] == [
        (0, 25, 20, 5),
        (1, 12, 12, 0),
        (2, 9, 5, 4),
    ]


def test_partition_unknown_to_the_checkpoint_lags_by_all_retained_messages():
    topic = TopicOffsets("users", earliest={0: 0, 1: 100}, latest={0: 10, 1: 150})
    lags = status.compute_lag({"users": {0: 10}}, [topic])
    assert [(p.partition, p.checkpoint_offset, p.lag) for p in lags] == [(0, 10, 0), (1, None, 50)]


def test_checkpoint_ahead_of_a_recreated_topic_shows_negative_lag():
    (lag,) = status.compute_lag({"users": {0: 500}}, [users_offsets(p0=3)])
    assert lag.lag == -497


def test_topics_that_are_down_or_missing_give_no_lag_rows():
    down = TopicOffsets("users", error="kafka down: connection refused")
    missing = TopicOffsets("users", exists=False)
    assert status.compute_lag({"users": {0: 1}}, [down, missing]) == []


def test_stream_progress_from_a_checkpoint(checkpoint):
    settings = settings_for(spark_checkpoint_dir=str(checkpoint))
    topics = [users_offsets(p0=25, p1=12, p2=9), TopicOffsets("users.dead_letter", latest={0: 99})]
    view = status.stream_progress(settings, topics, now=1_000_042.0)
    assert view.error is None
    assert (view.committed_batch, view.in_flight_batch) == (1, 2)
    assert view.last_commit_age_seconds == pytest.approx(42.0)
    assert [p.lag for p in view.lag] == [5, 0, 4]  # the dead-letter topic is not the job's input
    assert view.total_lag == 9


def test_stream_progress_reads_the_progress_file(checkpoint):
    # The shape spark/progress.py writes: Spark's progress names plus the job's own totals.
    progress = {"batchId": 1, "numInputRows": 17, "processedRowsPerSecond": 3.4, "timestamp": "2024-11-25T02:00:00.000Z",
                "totals": {"records_in": 40, "rows_written": 38, "dead_lettered": 2, "batches": 2}}
    Path(f"{checkpoint}.progress.json").write_text(json.dumps(progress))
    view = status.stream_progress(settings_for(spark_checkpoint_dir=str(checkpoint)), [users_offsets(p0=1)])
    assert view.progress == progress
    assert view.progress_file == str(Path(f"{checkpoint}.progress.json").resolve())
    text = "\n".join(status.render_stream(view))
    assert "numInputRows=17" in text and "dead_lettered=2" in text


def test_stream_progress_of_a_missing_checkpoint_is_an_error_not_a_crash(tmp_path):
    view = status.stream_progress(settings_for(spark_checkpoint_dir=str(tmp_path / "nope")), [users_offsets(p0=1)])
    assert "no Spark checkpoint" in view.error
    assert "unavailable: no Spark checkpoint" in "\n".join(status.render_stream(view))


def test_stream_progress_of_a_corrupt_offsets_file_is_an_error(tmp_path):
    (tmp_path / "offsets").mkdir()
    (tmp_path / "offsets" / "0").write_text('v1\n{}\n{"users":{"0":')  # torn write
    view = status.stream_progress(settings_for(spark_checkpoint_dir=str(tmp_path)), [users_offsets(p0=1)])
    assert view.error


# --- Reasons, passwords, launcher seam ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(111, "Tried connecting to [('127.0.0.1', 9042)]. Last error: Connection refused"),
         "connection refused"),
        (requests.ConnectionError("HTTPConnectionPool(host='localhost', port=1): Max retries exceeded "
                                  "(Caused by NewConnectionError('<x>: Failed to establish a new connection: "
                                  "[Errno 111] Connection refused'))"), "connection refused"),
        (requests.ReadTimeout("read timed out"), "no answer before the timeout"),
        (RuntimeError(""), "RuntimeError"),
    ],
)
def test_reason_is_one_short_line(exc, expected):
    assert status.reason(exc) == expected


def test_kafka_reason_strips_librdkafka_decoration():
    message = "localhost:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)"
    assert status.kafka_reason(message) == "connection refused"


def test_airflow_password_prefers_the_setting(tmp_path):
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "from-file"}')
    assert status.airflow_password(settings_for(stack_home=tmp_path)) == "from-file"
    assert status.airflow_password(settings_for(stack_home=tmp_path, airflow_admin_password="set")) == "set"
    assert status.airflow_password(settings_for(stack_home=tmp_path / "empty")) is None


def test_dag_runs_without_a_password_says_how_to_get_one(tmp_path):
    view = status.dag_runs(settings_for(stack_home=tmp_path), timeout=1)
    assert view.runs == [] and "AIRFLOW_ADMIN_PASSWORD" in view.error


def test_merge_launcher_adds_pid_and_log_and_a_row_for_the_stream():
    health = [ServiceHealth("kafka", "localhost:9092", True, "1 broker(s)")]
    processes = {
        "kafka": {"pid": 4242, "port": 9092, "log": "/x/kafka.log"},
        "spark-stream": {"pid": None, "port": None, "log": "/x/stream.log"},
    }
    merged = status.merge_launcher(health, processes)
    assert (merged[0].pid, merged[0].port, merged[0].log, merged[0].core) == (4242, 9092, "/x/kafka.log", True)
    assert (merged[1].name, merged[1].up, merged[1].core) == ("spark-stream", False, False)
    assert "not running" in merged[1].detail
    text = "\n".join(status.render_services(merged))
    assert "4242" in text and "/x/stream.log" in text


def test_launcher_processes_reads_the_launchers_pid_files(tmp_path):
    """Against the real stack.launcher: a live pid, a dead pid, and services never started (no row)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kafka.pid").write_text(str(os.getpid()))
    exited = subprocess.Popen(["true"])
    exited.wait()
    (tmp_path / "run" / "stream.pid").write_text(str(exited.pid))
    rows = status.launcher_processes(settings_for(stack_home=tmp_path))
    assert set(rows) == {"kafka", "spark-stream"}
    assert rows["kafka"]["pid"] == os.getpid() and rows["kafka"]["port"] == 9092
    assert rows["kafka"]["log"] == str(tmp_path / "logs" / "kafka.log")
    assert rows["spark-stream"]["pid"] is None


# --- Rendering and exit codes ---------------------------------------------------------------------


def all_down_report() -> StatusReport:
    down = [
        ServiceHealth("kafka", "localhost:1", False, "connection refused", core=True),
        ServiceHealth("schema-registry", "http://localhost:2", False, "connection refused", core=True),
        ServiceHealth("cassandra", "127.0.0.1:3", False, "connection refused", core=True),
        ServiceHealth("datasource", "http://localhost:4/api/", False, "connection refused", core=False),
        ServiceHealth("airflow", "http://localhost:5", False, "connection refused", core=False),
    ]
    return StatusReport(
        generated_at="2024-11-25T00:00:00+00:00",
        services=down,
        topics=[TopicOffsets("users", error="kafka down: connection refused")],
        stream=StreamProgress("/tmp/cp", error="no Spark checkpoint at /tmp/cp"),
        dead_letters=DeadLetterCounts("users.dead_letter", error="kafka down: connection refused"),
        schemas=SchemaRegistryView("http://localhost:2", error="connection refused"),
        cassandra=RowCount("userstream.users", error="connection refused"),
        dag_runs=DagRunsView("user_stream", error="connection refused"),
    )


def test_render_shows_every_section_down_with_its_reason():
    text = status.render(all_down_report())
    for heading in ("Services", "Topics", "Stream", "Dead letters", "Schemas", "Cassandra", "DAG runs"):
        assert heading in text
    assert text.count("DOWN") == 3 and text.count(" down ") == 2
    assert text.count("unavailable: ") == 6


def test_render_counts_dead_letters_by_stage():
    counts = DeadLetterCounts("users.dead_letter", by_stage={"transform": 2, "decode": 1}, scanned=3, expected=5,
                              complete=False)
    text = "\n".join(status.render_dead_letters(counts))
    assert "transform  2" in text and "total      3" in text and "partial: scanned 3 of 5" in text


def test_json_output_is_the_same_data():
    data = json.loads(status.to_json(all_down_report()))
    assert data["core_down"] == ["kafka", "schema-registry", "cassandra"]
    assert data["services"][0] == {
        "name": "kafka", "address": "localhost:1", "up": False, "detail": "connection refused", "core": True,
        "pid": None, "port": None, "log": None, "version": None,
    }


@pytest.mark.parametrize(("check", "core_up", "expected"), [(False, False, 0), (True, False, 1), (True, True, 0)])
def test_check_exits_1_only_when_a_core_service_is_down(monkeypatch, capsys, check, core_up, expected):
    report = all_down_report()
    for service in report.services:
        service.up = core_up if service.core else False
    monkeypatch.setattr(status, "collect", lambda settings, timeout, scan_seconds: report)
    args = status.parse_args(["--check"] if check else [])
    assert status.main(args, settings=settings_for()) == expected
    assert "Services" in capsys.readouterr().out


# --- Real sockets ---------------------------------------------------------------------------------


def test_services_that_are_down_are_shown_down_without_crashing(tmp_path):
    port = closed_port()
    settings = settings_for(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        schema_registry_url=f"http://127.0.0.1:{port}",
        cassandra_port=port,
        datasource_url=f"http://127.0.0.1:{port}/api/",
        airflow_url=f"http://127.0.0.1:{port}",
        airflow_admin_password="unused",
        spark_checkpoint_dir=str(tmp_path / "cp"),
        stack_home=tmp_path,  # no launcher pid files: only the probes count
    )
    started = time.monotonic()
    report = status.collect(settings, timeout=1.0, scan_seconds=1.0)
    assert time.monotonic() - started < 15, "probes must run in parallel and respect the timeout"
    assert [s.up for s in report.services] == [False] * 5
    assert all("refused" in s.detail for s in report.services), [s.detail for s in report.services]
    assert report.core_down() == ["kafka", "schema-registry", "cassandra", "datasource"]
    for section in (report.dead_letters, report.schemas, report.cassandra, report.dag_runs, report.stream):
        assert section.error
    assert all(t.error for t in report.topics)
    assert "DOWN" in status.render(report)


# --- Against the real embedded services -----------------------------------------------------------


@pytest.fixture(scope="module")
def live_settings() -> Settings:
    """The default settings (the embedded stack), failing fast with how to start it."""
    settings = settings_for()
    for probe in (status.probe_kafka, status.probe_registry, status.probe_cassandra):
        health = probe(settings, 5.0)
        if not health.up:
            pytest.fail(f"{health.name} at {health.address} is down ({health.detail}); start it with `make up`")
    return settings


@pytest.fixture
def fresh_topic(live_settings):
    """A unique 3-partition topic, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"status-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient(live_settings.kafka_config())
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].result(timeout=30)


def produce(settings: Settings, topic: str, messages: list[tuple[int, list[tuple[str, bytes]]]]) -> None:
    """Writes one message per (partition, headers); raises if any delivery fails."""
    from confluent_kafka import Producer

    failures = []
    producer = Producer(settings.kafka_config())
    for i, (partition, headers) in enumerate(messages):
        producer.produce(topic, value=f"m{i}".encode(), partition=partition, headers=headers,
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
    assert producer.flush(30) == 0
    assert failures == []


@pytest.mark.integration
def test_end_offsets_of_a_real_topic(live_settings, fresh_topic):
    produce(live_settings, fresh_topic, [(0, []), (0, []), (0, []), (2, [])])
    (offsets,) = status.topic_offsets(live_settings, [fresh_topic], timeout=10)
    assert offsets.error is None and offsets.exists
    assert offsets.earliest == {0: 0, 1: 0, 2: 0}
    assert offsets.latest == {0: 3, 1: 0, 2: 1}
    assert offsets.messages == 4


@pytest.mark.integration
def test_missing_topic_is_reported_as_not_existing(live_settings):
    (offsets,) = status.topic_offsets(live_settings, [f"status-test-missing-{uuid.uuid4().hex[:8]}"], timeout=10)
    assert offsets.error is None and not offsets.exists


@pytest.mark.integration
def test_dead_letters_counted_by_stage_on_a_real_topic(live_settings, fresh_topic):
    transform = dead_letter.headers(dead_letter.TRANSFORM, "postcode missing", "http://x/api/?seed=1")
    decode = dead_letter.headers(dead_letter.DECODE, "unknown schema id 99", "users/0/5")
    produce(live_settings, fresh_topic, [(0, transform), (1, transform), (2, decode), (2, [])])
    settings = live_settings.model_copy(update={"dead_letter_topic": fresh_topic})
    counts = status.dead_letter_counts(settings, timeout=10, scan_seconds=30)
    assert counts.error is None and counts.complete
    assert counts.by_stage == {"transform": 2, "decode": 1, "(no stage header)": 1}
    assert (counts.scanned, counts.expected) == (4, 4)


@pytest.mark.integration
def test_lag_against_a_real_topic(live_settings, fresh_topic, tmp_path):
    produce(live_settings, fresh_topic, [(0, [])] * 5 + [(1, [])] * 2)
    write_offsets(tmp_path, 0, {fresh_topic: {"0": 3, "1": 2, "2": 0}})
    write_commit(tmp_path, 0)
    settings = live_settings.model_copy(update={"users_topic": fresh_topic, "spark_checkpoint_dir": str(tmp_path)})
    topics = status.topic_offsets(settings, [fresh_topic], timeout=10)
    view = status.stream_progress(settings, topics)
    assert [(p.partition, p.lag) for p in view.lag] == [(0, 2), (1, 0), (2, 0)]


@pytest.mark.integration
def test_registry_subject_versions_and_compatibility(live_settings):
    subject = f"status-test-{uuid.uuid4().hex[:12]}-value"
    base = live_settings.schema_registry_url.rstrip("/")
    schema = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "string"}]}
    registered = requests.post(f"{base}/subjects/{subject}/versions", json={"schema": json.dumps(schema)}, timeout=10)
    registered.raise_for_status()
    try:
        view = status.schema_subjects(live_settings, timeout=10)
        assert view.error is None
        (info,) = [s for s in view.subjects if s.name == subject]
        assert info.versions == [1]
        assert info.latest_id == registered.json()["id"]
        assert info.compatibility  # subject level or the registry's global rule
    finally:
        requests.delete(f"{base}/subjects/{subject}", timeout=10)
        requests.delete(f"{base}/subjects/{subject}", params={"permanent": "true"}, timeout=10)


@pytest.mark.integration
def test_cassandra_probe_and_row_count(live_settings):
    health = status.probe_cassandra(live_settings, 10)
    assert health.up and health.detail.startswith("Cassandra 5.")
    local = status.cassandra_rows(live_settings.model_copy(update={"cassandra_keyspace": "system",
                                                                    "cassandra_table": "local"}), 10)
    assert (local.error, local.rows) == (None, 1)


@pytest.mark.integration
@pytest.mark.spark
def test_lag_from_a_checkpoint_spark_itself_wrote(live_settings, fresh_topic, tmp_path, spark):
    """The format assumptions above, checked against a real Structured Streaming Kafka query."""
    from spark.kafka_options import kafka_options

    produce(live_settings, fresh_topic, [(0, [])] * 5 + [(1, [])] * 2)
    checkpoint = tmp_path / "checkpoint"
    query = (
        spark.readStream.format("kafka").options(**kafka_options(live_settings))
        .option("subscribe", fresh_topic).option("startingOffsets", "earliest").load()
        .writeStream.format("noop").option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True).start()
    )
    try:
        assert query.awaitTermination(120), "the availableNow query did not finish in 120 s"
    finally:
        query.stop()
    produce(live_settings, fresh_topic, [(2, [])] * 3)  # arrives after the query: lag

    settings = live_settings.model_copy(update={"users_topic": fresh_topic, "spark_checkpoint_dir": str(checkpoint)})
    view = status.stream_progress(settings, status.topic_offsets(settings, [fresh_topic], timeout=10))
    assert view.error is None
    assert view.committed_batch is not None and view.in_flight_batch is None
    assert [(p.partition, p.checkpoint_offset, p.lag) for p in view.lag] == [(0, 5, 0), (1, 2, 0), (2, 0, 3)]


# --- Airflow's REST API, against a stand-in server ---------------------------------------------------
# Airflow is optional in the embedded stack; these pin the requests status.py makes (login, order,
# bearer token) and the parsing of Airflow 3's response shapes (DAGRunCollectionResponse, HealthInfoResponse).


@pytest.fixture
def fake_airflow():
    """A tiny HTTP server answering like Airflow's api-server; records the requests it saw."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread
    from urllib.parse import parse_qs, urlsplit

    seen: list[dict] = []
    health = {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": "x"},
              "triggerer": {"status": None, "latest_triggerer_heartbeat": None},
              "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": "x"}}
    run = {"dag_run_id": "manual__2024-11-25T00:00:00+00:00", "dag_id": "user_stream", "logical_date": None,
           "run_after": "2024-11-25T00:00:00Z", "start_date": "2024-11-25T00:00:01Z", "end_date": None,
           "run_type": "manual", "state": "running"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "body": body})
            if body == {"username": "admin", "password": "right"}:
                self.reply(201, {"access_token": "tok"})
            else:
                self.reply(401, {"detail": "Invalid credentials"})

        def do_GET(self):
            url = urlsplit(self.path)
            seen.append({"path": url.path, "query": parse_qs(url.query), "auth": self.headers.get("Authorization")})
            if url.path == "/api/v2/monitor/health":
                self.reply(200, health)
            elif url.path == "/api/v2/dags/user_stream/dagRuns" and self.headers.get("Authorization") == "Bearer tok":
                self.reply(200, {"dag_runs": [run], "total_entries": 7})
            elif url.path.startswith("/api/v2/dags/"):
                self.reply(404, {"detail": "not found"})
            else:
                self.reply(401, {"detail": "no token"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "seen": seen, "health": health}
    server.shutdown()
    server.server_close()


def test_dag_runs_logs_in_and_asks_for_the_newest_runs(fake_airflow):
    settings = settings_for(airflow_url=fake_airflow["url"], airflow_admin_password="right")
    view = status.dag_runs(settings, timeout=5)
    assert view.error is None and view.total == 7
    assert [(r.run_id, r.state, r.run_type, r.run_after) for r in view.runs] == [
        ("manual__2024-11-25T00:00:00+00:00", "running", "manual", "2024-11-25T00:00:00Z")
    ]
    login, listing = fake_airflow["seen"]
    assert login == {"path": "/auth/token", "body": {"username": "admin", "password": "right"}}
    assert listing["query"] == {"order_by": ["-run_after"], "limit": ["5"]}
    assert listing["auth"] == "Bearer tok"
    assert "manual__2024-11-25" in "\n".join(status.render_dag_runs(view))


def test_dag_runs_with_a_wrong_password_says_so(fake_airflow):
    view = status.dag_runs(settings_for(airflow_url=fake_airflow["url"], airflow_admin_password="wrong"), timeout=5)
    assert view.error == "Airflow rejected the password of user 'admin'"


def test_dag_runs_of_an_unknown_dag(fake_airflow):
    settings = settings_for(airflow_url=fake_airflow["url"], airflow_admin_password="right")
    assert "not found" in status.dag_runs(settings, timeout=5, dag_id="nope").error


def test_airflow_probe_reports_each_component(fake_airflow):
    settings = settings_for(airflow_url=fake_airflow["url"])
    health = status.probe_airflow(settings, 5)
    assert health.up and "scheduler healthy" in health.detail and not health.core
    fake_airflow["health"]["scheduler"]["status"] = "unhealthy"
    health = status.probe_airflow(settings, 5)
    assert not health.up and "scheduler unhealthy" in health.detail


def test_airflow_probe_can_require_a_component_the_health_answer_lacks(fake_airflow):
    """The launcher waits for components this way: absent is fine for the view, not for readiness."""
    settings = settings_for(airflow_url=fake_airflow["url"])
    fake_airflow["health"].pop("dag_processor", None)
    assert status.probe_airflow(settings, 5).up
    health = status.probe_airflow(settings, 5, require=("scheduler", "dag_processor"))
    assert not health.up and "scheduler healthy" in health.detail
