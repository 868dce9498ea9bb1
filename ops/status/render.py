"""The report as terminal tables, with rich: one renderer for every section and for `python -m stack status`.

Each `*_section` function turns one dataclass into a rich renderable; `text()`
renders any of them to plain text (what tests read and what a pipe gets).
"""

from __future__ import annotations

import io
from typing import Any, Iterable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ops.status.kafka import DeadLetterCounts, GroupLag, TopicOffsets
from ops.status.report import ServiceRow, StatusReport
from ops.status.sections import DagRunsView, RowCount, SchemaRegistryView, StreamJob

PROGRESS_KEYS = ("timestamp", "batchId", "numInputRows", "processedRowsPerSecond")  # Spark's names, which spark/progress.py writes


def _table(title: str, headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> RenderableType:
    """A borderless table under a bold heading (a heading line, not rich's table title, which wraps at the table's width)."""
    table = Table(*headers, box=box.SIMPLE, pad_edge=False)
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    return Group(Text(title, style="bold"), table) if title else table


def _note(title: str, *lines: str) -> Group:
    return Group(Text(title, style="bold"), *(Text("  " + line) for line in lines), Text(""))


def services_section(services: list[ServiceRow]) -> RenderableType:
    rows = []
    for s in services:
        state = "up" if s.up else ("DOWN" if s.core else "down")
        rows.append([s.name, state, s.version, s.pid, s.rss_mb, s.address, s.detail, s.log])
    return _table("Services", ["SERVICE", "STATE", "VERSION", "PID", "RSS MB", "ADDRESS", "DETAIL", "LOG"], rows)


def topics_section(topics: list[TopicOffsets]) -> RenderableType:
    notes, rows = [], []
    for t in topics:
        if t.error:
            notes.append(f"{t.topic}: unavailable: {t.error}")
        elif not t.exists:
            notes.append(f"{t.topic}: does not exist yet")
        else:
            rows += [[t.topic, p, t.earliest.get(p), t.latest[p], t.latest[p] - t.earliest.get(p, 0)] for p in sorted(t.latest)]
    if not rows:
        return _note("Topics", *notes)
    table = _table("Topics", ["TOPIC", "PARTITION", "EARLIEST", "END", "MESSAGES"], rows)
    return Group(table, *(Text("  " + n) for n in notes), Text("")) if notes else table


def stream_section(job: StreamJob, lag: GroupLag) -> RenderableType:
    lines = [f"state: {job.state_line or '-'}"]
    if job.error:
        lines.append(f"unavailable: {job.error}")
    if job.progress:
        summary = ", ".join(f"{k}={job.progress[k]}" for k in PROGRESS_KEYS if k in job.progress)
        lines.append(f"last batch: {summary or 'present'} ({job.progress_file})")
        totals = job.progress.get("totals")
        if isinstance(totals, dict) and totals:
            lines.append("totals since the first batch: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
    if lag.error:
        lines.append(f"lag unavailable: {lag.error}")
    parts: list[RenderableType] = [Group(Text(f"Stream (consumer group {lag.group})", style="bold"), *(Text("  " + line) for line in lines))]
    if lag.partitions:
        rows = [[p.topic, p.partition, p.end_offset, p.committed, p.lag] for p in lag.partitions]
        parts.append(_table("", ["TOPIC", "PARTITION", "END", "COMMITTED", "LAG"], rows))
        parts.append(Text(f"  total lag: {lag.total}"))
        if any(p.lag < 0 for p in lag.partitions):
            parts.append(Text("  note: the group's commit is ahead of the topic; was the topic deleted and re-created?"))
        parts.append(Text(""))
    return Group(*parts)


def dead_letters_section(counts: DeadLetterCounts) -> RenderableType:
    title = f"Dead letters ({counts.topic})"
    if counts.error:
        return _note(title, f"unavailable: {counts.error}")
    if not counts.exists:
        return _note(title, "topic does not exist yet: no dead letters")
    if not counts.by_stage:
        return _note(title, "none")
    rows = [[stage, why, n] for stage, reasons in sorted(counts.by_reason.items()) for why, n in sorted(reasons.items())]
    rows.append(["total", "", counts.scanned])
    table = _table(title, ["STAGE", "REASON", "COUNT"], rows)
    if counts.complete:
        return table
    return Group(table, Text(f"  partial: scanned {counts.scanned} of {counts.expected} before the time limit"))


def schemas_section(view: SchemaRegistryView) -> RenderableType:
    title = f"Schemas ({view.url}; global compatibility {view.global_compatibility or '-'})"
    if view.error:
        return _note(title, f"unavailable: {view.error}")
    if not view.subjects:
        return _note(title, "no subjects registered (run `make register`)")
    rows = [[s.name, ",".join(map(str, s.versions)), s.latest_id, f"{s.compatibility or '-'} ({s.compatibility_source})"]
            for s in view.subjects]
    return _table(title, ["SUBJECT", "VERSIONS", "LATEST ID", "COMPATIBILITY"], rows)


def cassandra_section(view: RowCount) -> RenderableType:
    return _note(f"Cassandra {view.table}", f"unavailable: {view.error}" if view.error else f"{view.rows} row(s)")


def dag_runs_section(view: DagRunsView) -> RenderableType:
    title = f"DAG runs ({view.dag_id}, newest first)"
    if view.error:
        return _note(title, f"unavailable: {view.error}")
    if not view.runs:
        return _note(title, "no runs yet")
    rows = [[r.run_id, r.state, r.run_type, r.run_after, r.start_date, r.end_date] for r in view.runs]
    return _table(title, ["RUN ID", "STATE", "TYPE", "RUN AFTER", "START", "END"], rows)


def report_sections(report: StatusReport) -> Group:
    return Group(
        Text(f"userstream status at {report.generated_at}", style="bold"),
        services_section(report.services),
        topics_section(report.topics),
        stream_section(report.stream, report.lag),
        dead_letters_section(report.dead_letters),
        schemas_section(report.schemas),
        cassandra_section(report.cassandra),
        dag_runs_section(report.dag_runs),
    )


def text(renderable: RenderableType, width: int = 240) -> str:
    """Plain text, no colours: for tests, pipes and logs."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
