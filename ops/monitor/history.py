"""The monitor's memory: a sample of the pipeline every few seconds, kept in memory and in a small JSON file.

Each sample is a flat dict of numbers the charts and /metrics read: rows and
records the job has counted (its progress file's totals), throughput (rows
written per second since the previous sample), batch duration, freshness
(ops.monitor.freshness), consumer-group lag per partition, and which services
answer. The newest full picture (service rows, lag rows, the job's state line,
the dead-letter tally) is kept beside the history as `latest`. The file
(`<STACK_HOME>/monitor/history.json`, rewritten atomically) lets a restarted
monitor keep drawing the last hour instead of starting blank.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from core import names
from core.settings import Settings
from ops.monitor.dead_letters import DeadLetterTally
from ops.monitor.freshness import freshness_seconds
from ops.status.kafka import group_lag, topic_offsets
from ops.status.report import collect_services
from ops.status.sections import stream_job

KEEP = 720  # samples: an hour at the default 5 s


def history_path(settings: Settings) -> Path:
    return Path(settings.stack_home) / "monitor" / "history.json"


def _age_seconds(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    return max(0.0, now - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def throughput(previous: dict[str, Any] | None, current: dict[str, Any]) -> float | None:
    """Rows written per second between two samples; None for the first, or after the job's totals restarted."""
    if not previous or previous.get("rows_written_total") is None or current.get("rows_written_total") is None:
        return None
    rows = current["rows_written_total"] - previous["rows_written_total"]
    seconds = current["t"] - previous["t"]
    return round(rows / seconds, 2) if seconds > 0 and rows >= 0 else None


class Sampler:
    """Takes a sample every `interval` seconds in a daemon thread; `sample_once()` is what tests call."""

    def __init__(self, settings: Settings, interval: float | None = None, timeout: float = 3.0, path: Path | None = None):
        self.settings = settings
        self.interval = interval or settings.monitor_sample_seconds
        self.timeout = timeout
        self.path = path or history_path(settings)
        self.samples: deque[dict[str, Any]] = deque(self._load(), maxlen=KEEP)
        self.latest: dict[str, Any] = {}
        self.failure: str | None = None  # why the last sample could not be taken; /healthz and the page show it
        self.tally = DeadLetterTally(settings)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _load(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{self.path} is not the monitor's history ({exc}); delete it to start a new one") from exc
        return data.get("samples", []) if isinstance(data, dict) else []

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"samples": list(self.samples)}), encoding="utf-8")
        os.replace(tmp, self.path)

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.samples)

    def sample_once(self) -> dict[str, Any]:
        """Probe everything once; append the numbers to the history and keep the full picture as `latest`."""
        now = time.time()
        settings, timeout = self.settings, self.timeout
        services = collect_services(settings, timeout)
        for row in services:
            if row.name == names.MONITOR:  # this process: it answers, or nobody would be reading this
                row.up, row.detail, row.pid = True, "this monitor", os.getpid()
        (users,) = topic_offsets(settings, [settings.users_topic], timeout)
        lag = group_lag(settings, users, timeout)
        job = stream_job(settings)
        letters = self.tally.update(timeout)
        progress = job.progress or {}
        totals, batch = progress.get("totals") or {}, progress.get("batch") or {}
        with self._lock:
            previous = self.samples[-1] if self.samples else None
            sample = {
                "t": round(now, 3),
                "services": {row.name: row.up for row in services},
                "records_in_total": totals.get("records_in"),
                "rows_written_total": totals.get("rows_written"),
                "dead_lettered_total": totals.get("dead_lettered"),
                "batch_duration_seconds": batch.get("duration_seconds"),
                "last_batch_age_seconds": _age_seconds(progress.get("updated_at"), now),
                "freshness_seconds": freshness_seconds(settings, lag, timeout, now),
                "lag_total": lag.total,
                "lag": {f"{p.topic}/{p.partition}": p.lag for p in lag.partitions},
            }
            sample["rows_per_second"] = throughput(previous, sample)
            self.samples.append(sample)
            self.latest = {
                "sampled_at": now,
                "services": [{**dataclasses.asdict(row), "core": row.core} for row in services],
                "lag": {**dataclasses.asdict(lag), "total": lag.total},
                "stream": dataclasses.asdict(job),
                "dead_letters": dataclasses.asdict(letters),
                "sample": sample,
            }
            self._save()
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
                self.failure = None
            except Exception as exc:  # noqa: BLE001 - surfaced on /healthz (503) and the page, and the loop goes on
                self.failure = f"{type(exc).__name__}: {exc}"
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
