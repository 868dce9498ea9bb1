"""A small JSON file per query saying how far it got, for `make status`.

Spark keeps its real progress in the checkpoint (offsets/ and commits/), in
a format meant for Spark. The status view wants plain numbers, so after each
batch the job rewrites `<checkpoint>/../<checkpoint name>.progress.json`:

    {"query": "users", "batch_id": 7, "updated_at": "2025-...Z",
     "timestamp": ..., "batchId": 7, "numInputRows": 500, "processedRowsPerSecond": 277.8,
     "batch": {"records_in": 500, "rows_written": 497, "dead_lettered": 3,
               "schema_ids": [1, 2], "duration_seconds": 1.8},
     "totals": {"records_in": ..., "rows_written": ..., "dead_lettered": ..., "batches": ...},
     "end_offsets": {"users": {"0": 1200, "1": 1187, "2": 1213}},
     "recent": [{"batch_id": 6, "finished_at": 1764330000.12, "records_in": ..., ...}, ...],
     "reader_schema_id": 2}

`end_offsets` are the next offsets to read per partition (Kafka's committed
offset convention), so lag = high watermark - end offset. Totals survive
restarts. foreachBatch is at-least-once: after a crash Spark runs the last
uncommitted batch again under the same batch id, so a record for the batch id
already on file replaces that batch's counts instead of adding to them; a
lower batch id means the checkpoint was reset, and the totals start over.
`recent` holds the last RECENT_BATCHES batches' counts with the time each
finished, so a reader polling once a second (bench.monitor) misses none
when several batches finish in one second.
The write is atomic (temp file + rename): a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

TOTAL_KEYS = ("records_in", "rows_written", "dead_lettered")
RECENT_BATCHES = 32


def progress_path(checkpoint_dir: str) -> Path:
    """The progress file next to a local checkpoint directory."""
    checkpoint = Path(checkpoint_dir.removeprefix("file://")).resolve()
    return checkpoint.parent / f"{checkpoint.name}.progress.json"


def read_progress(path: Path) -> dict[str, Any] | None:
    """The last progress written, or None before the first batch."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def merge_offsets(previous: dict[str, dict[str, int]], batch: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Keep partitions the batch did not touch; a partition only moves forward."""
    merged = {topic: dict(parts) for topic, parts in previous.items()}
    for topic, parts in batch.items():
        for partition, offset in parts.items():
            merged.setdefault(topic, {})[partition] = max(offset, merged.get(topic, {}).get(partition, 0))
    return merged


def next_progress(previous: dict[str, Any] | None, query: str, batch_id: int, batch: dict[str, Any],
                  end_offsets: dict[str, dict[str, int]], reader_schema_id: int | None) -> dict[str, Any]:
    """The progress record after one batch (a replayed batch id replaces its earlier counts)."""
    if previous and previous.get("batch_id", -1) > batch_id:
        previous = None  # a new checkpoint: its batch ids start again at 0
    totals = dict((previous or {}).get("totals") or {key: 0 for key in (*TOTAL_KEYS, "batches")})
    replayed = previous["batch"] if previous and previous.get("batch_id") == batch_id else None
    for key in TOTAL_KEYS:
        totals[key] = totals.get(key, 0) + batch[key] - (replayed[key] if replayed else 0)
    totals["batches"] = totals.get("batches", 0) + (0 if replayed else 1)
    finished = dt.datetime.now(dt.timezone.utc)
    now = finished.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    earlier = [b for b in (previous or {}).get("recent") or [] if b["batch_id"] < batch_id]
    recent = [*earlier, {"batch_id": batch_id, "finished_at": round(finished.timestamp(), 3), **batch}][-RECENT_BATCHES:]
    seconds = batch.get("duration_seconds") or 0
    return {
        # The names Spark's StreamingQueryProgress uses, for readers that know that format.
        "timestamp": now,
        "batchId": batch_id,
        "numInputRows": batch["records_in"],
        "processedRowsPerSecond": round(batch["records_in"] / seconds, 1) if seconds else 0.0,
        "query": query,
        "batch_id": batch_id,
        "updated_at": now,
        "batch": batch,
        "totals": totals,
        "end_offsets": merge_offsets((previous or {}).get("end_offsets") or {}, end_offsets),
        "recent": recent,
        "reader_schema_id": reader_schema_id,
    }


def write_progress(path: Path, record: dict[str, Any]) -> None:
    """Replace the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
