"""The fault table: per case, what was produced, what landed, what was dead-lettered, restarts and catch-up time.

Filled by each case (also when it fails: the figures then say how far it
got), written as JSON and Markdown under pytest's base temp folder at the end
of the suite, and copied to $FAULT_TABLE when that is set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class FaultRow:
    case: str
    users_produced: int = 0
    rows_landed: int | None = None
    dead_lettered: int | None = None
    job_restarts: int | None = None
    catch_up_seconds: float | None = None  # from the end of the fault until the job's lag was zero
    outcome: str = "not run"  # passed / failed / error
    seconds: float | None = None  # the whole case, setup included
    note: str = ""


@dataclass
class FaultTable:
    rows: list[FaultRow] = field(default_factory=list)

    def markdown(self) -> str:
        def cell(value) -> str:
            if value is None:
                return "–"
            return f"{value:.1f}" if isinstance(value, float) else str(value)

        lines = [
            "| case | users produced | rows landed | dead-lettered | job restarts | s from fault end to lag 0 | outcome | case s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            lines.append(f"| {row.case} | {cell(row.users_produced)} | {cell(row.rows_landed)} | {cell(row.dead_lettered)} | "
                         f"{cell(row.job_restarts)} | {cell(row.catch_up_seconds)} | {row.outcome} | {cell(row.seconds)} |")
        notes = [f"- {row.case}: {row.note}" for row in self.rows if row.note]
        return "\n".join(lines + ([""] + notes if notes else [])) + "\n"

    def write(self, folder: Path, copy_to: str | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fault_table.json").write_text(json.dumps([asdict(row) for row in self.rows], indent=2) + "\n")
        markdown = folder / "fault_table.md"
        markdown.write_text(self.markdown())
        if copy_to:
            Path(copy_to).write_text(self.markdown())
        return markdown
