"""The whole report: every section collected in parallel, so services that are down cost one timeout, not one each.

`collect()` is what `make status` prints and what `--json` serializes;
`collect_services()` is the services table alone (`python -m stack status`).
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core import health, job_state, names
from core.health import ServiceHealth
from core.settings import Settings
from ops.status.kafka import DeadLetterCounts, GroupLag, TopicOffsets, dead_letter_counts, group_lag, topic_offsets
from ops.status.processes import ProcessInfo, alive, launcher_processes
from ops.status.sections import (
    DagRunsView,
    RowCount,
    SchemaRegistryView,
    StreamJob,
    cassandra_rows,
    dag_runs,
    schema_subjects,
    stream_job,
)

PROBED = {**health.PROBES, names.MONITOR: health.probe_monitor}


@dataclass
class ServiceRow:
    """A service as probed, plus its process when the embedded launcher started it."""

    name: str
    address: str
    up: bool
    detail: str
    version: str | None = None
    pid: int | None = None
    rss_mb: int | None = None
    log: str | None = None

    @property
    def core(self) -> bool:
        return self.name in names.CORE_SERVICES


@dataclass
class StatusReport:
    generated_at: str
    services: list[ServiceRow]
    topics: list[TopicOffsets]
    lag: GroupLag
    stream: StreamJob
    dead_letters: DeadLetterCounts
    schemas: SchemaRegistryView
    cassandra: RowCount
    dag_runs: DagRunsView

    def core_down(self) -> list[str]:
        return [s.name for s in self.services if s.core and not s.up]


def service_row(probed: ServiceHealth, process: ProcessInfo | None) -> ServiceRow:
    row = ServiceRow(probed.name, probed.address, probed.up, probed.detail, probed.version)
    if process is not None:
        row.pid, row.rss_mb, row.log = process.pid, process.rss_mb, process.log
        if process.stale_pid is not None and not probed.up:
            row.detail += f" (the launcher's process {process.stale_pid} has exited; see {process.log})"
    return row


def stream_row(settings: Settings, job: StreamJob, process: ProcessInfo | None) -> ServiceRow:
    """The job has no port to probe: it is up while its process runs and its state file does not say failed.

    The process is the launcher's, else the one the state file names (a job
    started by hand with `python -m spark.stream_job`).
    """
    pid = process.pid if process else None
    state = job.state or {}
    if pid is None and isinstance(state.get("pid"), int) and alive(state["pid"]):
        pid = state["pid"]
    up = pid is not None and state.get("state") != job_state.FAILED
    if job.state_line:
        detail = job.state_line if pid is not None or state.get("state") == job_state.FAILED else f"not running (last: {job.state_line})"
    else:
        detail = "process running" if pid is not None else "not running (`make stream` starts it)"
    row = ServiceRow(names.STREAM, settings.spark_checkpoint_dir, up, detail,
                     version=health.installed_version(settings.stack_home, names.STREAM) if pid else None)
    if process is not None:
        row.pid, row.rss_mb, row.log = pid, process.rss_mb, process.log
    elif pid is not None:
        row.pid = pid
    return row


def merge_services(settings: Settings, probed: list[ServiceHealth], job: StreamJob) -> list[ServiceRow]:
    """One row per service in the launcher's order; Kafka gets the version of the jar the launcher runs."""
    processes = launcher_processes(Path(settings.stack_home))
    by_name = {p.name: p for p in probed}
    rows = []
    for name in names.ALL_SERVICES:
        if name == names.STREAM:
            rows.append(stream_row(settings, job, processes.get(name)))
            continue
        row = service_row(by_name[name], processes.get(name))
        if name == names.KAFKA and row.version is None and name in processes:
            row.version = health.installed_version(settings.stack_home, name)
        rows.append(row)
    return rows


def collect_services(settings: Settings, timeout: float = 3.0) -> list[ServiceRow]:
    """The services table alone: probes in parallel, processes, the job's state."""
    with ThreadPoolExecutor(max_workers=len(PROBED), thread_name_prefix="probe") as pool:
        futures = [pool.submit(probe, settings, timeout) for probe in PROBED.values()]
        return merge_services(settings, [f.result() for f in futures], stream_job(settings))


def collect(settings: Settings, timeout: float = 3.0, scan_seconds: float = 10.0) -> StatusReport:
    """Every section, probed in parallel."""
    topics = [settings.users_topic, settings.dead_letter_topic]
    with ThreadPoolExecutor(max_workers=12, thread_name_prefix="status") as pool:
        probes = [pool.submit(probe, settings, timeout) for probe in PROBED.values()]
        offsets = pool.submit(topic_offsets, settings, topics, timeout)
        letters = pool.submit(dead_letter_counts, settings, timeout, scan_seconds)
        schemas = pool.submit(schema_subjects, settings, timeout)
        rows = pool.submit(cassandra_rows, settings, timeout)
        runs = pool.submit(dag_runs, settings, timeout)
        job = stream_job(settings)
        topic_list = offsets.result()
        return StatusReport(
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            services=merge_services(settings, [f.result() for f in probes], job),
            topics=topic_list,
            lag=group_lag(settings, topic_list[0], timeout),
            stream=job,
            dead_letters=letters.result(),
            schemas=schemas.result(),
            cassandra=rows.result(),
            dag_runs=runs.result(),
        )


def to_dict(report: StatusReport) -> dict:
    """The report as plain data, with the derived values a reader would otherwise recompute."""
    data = dataclasses.asdict(report)
    for row, service in zip(data["services"], report.services):
        row["core"] = service.core
    data["lag"]["total"] = report.lag.total
    data["core_down"] = report.core_down()
    return data


def to_json(report: StatusReport) -> str:
    return json.dumps(to_dict(report), indent=2, default=str)
