"""What the streaming job is doing right now, in one small JSON file the demo, the status view and the launcher read.

The job rewrites `<checkpoint>/../<checkpoint name>.state.json` when its
state changes:

    {"state": "running", "since": "2026-...Z", "pid": 1234}
    {"state": "waiting", "since": "...", "service": "cassandra",
     "detail": "NoHostAvailable: ...", "pid": 1234}
    {"state": "failed", "since": "...", "pid": 1234,
     "error": {"class": "SparkUpgradeException", "message": "...",
               "batch_id": 7, "offsets": {"users": {"0": 120}},
               "hint": "what to do next"}}

`running`: batches are being processed. `waiting`: a service the job needs
is unreachable and the job retries with backoff (`service` names it).
`failed`: the job stopped; `error` says why in a form a person can act on
(the demo and `make status` print it in one line). The write is atomic
(temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

RUNNING, WAITING, FAILED = "running", "waiting", "failed"


def job_state_path(checkpoint_dir: str) -> Path:
    """The state file next to a local checkpoint directory (the progress file's neighbour)."""
    checkpoint = Path(checkpoint_dir.removeprefix("file://")).resolve()
    return checkpoint.parent / f"{checkpoint.name}.state.json"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_job_state(path: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Replace the state file atomically; returns the record written."""
    record = {"state": state, "since": now_iso(), "pid": os.getpid(), **fields}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return record


def read_job_state(path: Path) -> dict[str, Any] | None:
    """The last state written, or None if the job never ran with this checkpoint."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def one_line(record: dict[str, Any]) -> str:
    """The state as one line a person can act on (what the demo and `make status` print)."""
    state = record.get("state")
    if state == WAITING:
        return f"waiting for {record.get('service', '?')} since {record.get('since', '?')}: {record.get('detail', '')}".strip()
    if state == FAILED:
        error = record.get("error") or {}
        where = f" in batch {error['batch_id']}" if error.get("batch_id") is not None else ""
        offsets = f" at offsets {json.dumps(error['offsets'], sort_keys=True)}" if error.get("offsets") else ""
        hint = f". {error['hint']}" if error.get("hint") else ""
        kind, message = error.get("class", "an error"), error.get("message", "")
        # Py4J and Spark messages often start with the class already: say it once.
        what = message if message.startswith(kind) else f"{kind}: {message}"
        return f"stopped{where}{offsets} with {what}{hint}"
    return f"{state} since {record.get('since', '?')}"
