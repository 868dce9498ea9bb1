"""What a load run watches once a second: the job's lag, its batches, and each process's CPU and memory.

- Lag = the topic's high watermarks - the job's end offsets. The job writes
  those after every batch, once the rows are in Cassandra, into its progress
  file (spark/progress.py): the offsets Spark keeps in the checkpoint are not
  in a consumer group. Before the first batch the job is at offset 0 (a new
  topic read from `earliest`).
- Batches: each new batch id in the progress file, with its records and
  duration, as the job measured them, and the lag just after it (the low
  point of the lag's saw-tooth: it grows between batches by design).
- CPU (cores busy, from psutil's cpu_times deltas) and resident memory of
  the stack's services (the launcher's `.stack/run/<service>.pid`), the
  stream job's whole process tree (driver, JVM, Python workers) and this
  process (the publisher).

Use:
    with Monitor(settings, progress_file, job.tree) as monitor:
        ...
    monitor.samples, monitor.batches
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition

from core.settings import Settings
from spark.progress import read_progress


def service_pids(stack_home: Path) -> dict[str, int]:
    """The launcher's pid files: service name -> pid (services that are down have none)."""
    pids = {}
    for pidfile in sorted((stack_home / "run").glob("*.pid")):
        text = pidfile.read_text().strip()
        if text.isdigit():
            pids[pidfile.stem] = int(text)
    return pids


class CpuMeter:
    """CPU seconds per process group between two calls, from each process's cpu_times."""

    def __init__(self):
        self.last: dict[int, float] = {}
        self.processes: dict[int, psutil.Process] = {}

    def _process(self, pid: int) -> psutil.Process | None:
        if pid not in self.processes:
            try:
                self.processes[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                return None
        return self.processes[pid]

    def machine(self) -> dict[str, float]:
        """The whole machine's busy CPU seconds since the last call: other work on a shared host shows here."""
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        delta = busy - self.last.get(-1, busy)
        self.last[-1] = busy
        return {"cpu_seconds": delta, "rss_mb": (psutil.virtual_memory().total - psutil.virtual_memory().available) / 2**20}

    def measure(self, groups: dict[str, list[int]]) -> dict[str, dict[str, float]]:
        """{group: {"cpu_seconds": since last call, "rss_mb": now}}; a process first seen counts from now."""
        result = {"machine (all processes)": self.machine()}
        for name, pids in groups.items():
            cpu = rss = 0.0
            for pid in pids:
                process = self._process(pid)
                if process is None:
                    continue
                try:
                    with process.oneshot():
                        times = process.cpu_times()
                        total = times.user + times.system
                        rss += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                cpu += total - self.last.get(pid, total)
                self.last[pid] = total
            result[name] = {"cpu_seconds": cpu, "rss_mb": rss / 2**20}
        return result


class Monitor(threading.Thread):
    """A daemon thread sampling lag, batches and resources every `interval` seconds."""

    def __init__(self, settings: Settings, progress_file: Path, job_tree: Callable[[], list[psutil.Process]],
                 interval: float = 1.0):
        super().__init__(name="bench-monitor", daemon=True)
        self.settings = settings
        self.progress_file = progress_file
        self.job_tree = job_tree
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.batches: dict[int, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._consumer = Consumer({**settings.kafka_config(), "group.id": f"{settings.users_topic}-bench-monitor",
                                   "enable.auto.commit": False})
        self._cpu = CpuMeter()

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self.join(timeout=30)
        self._consumer.close()

    def high_watermarks(self) -> dict[str, int]:
        topic = self.settings.users_topic
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {str(p): self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}

    def job_offsets(self) -> tuple[dict[str, int], dict[str, Any] | None]:
        """The job's next offsets per partition, and the progress record they come from."""
        progress = read_progress(self.progress_file)
        offsets = ((progress or {}).get("end_offsets") or {}).get(self.settings.users_topic, {})
        return offsets, progress

    def lag(self) -> int:
        """Records in the topic the job has not written yet."""
        highs = self.high_watermarks()
        offsets, _ = self.job_offsets()
        return sum(max(0, high - offsets.get(p, 0)) for p, high in highs.items())

    def sample(self) -> dict[str, Any]:
        now = time.time()
        highs = self.high_watermarks()
        offsets, progress = self.job_offsets()
        lag = sum(max(0, high - offsets.get(p, 0)) for p, high in highs.items())
        new_batch = bool(progress) and progress["batch_id"] not in self.batches
        for batch in (progress or {}).get("recent") or []:
            # Every batch that finished since the last sample, not only the last one.
            self.batches.setdefault(batch["batch_id"], {"seen_at": batch["finished_at"], **batch})
        groups = {name: [pid] for name, pid in service_pids(self.settings.stack_home).items()}
        groups["stream job"] = [p.pid for p in self.job_tree()]
        groups["bench publisher"] = [os.getpid()]
        return {
            "t": now,
            "lag": lag,
            "after_batch": new_batch,  # a trough of the lag's saw-tooth: just after a batch was written
            "published": sum(highs.values()),
            "written": (progress or {}).get("totals", {}).get("rows_written", 0),
            "resources": self._cpu.measure(groups),
            "load_average_1m": os.getloadavg()[0],
        }

    def run(self) -> None:
        try:
            while not self._stopping.wait(self.interval):
                self.samples.append(self.sample())
        except BaseException as exc:  # kept and re-raised by check(): a dead monitor must fail the run, not hide
            self.error = exc

    def check(self) -> None:
        """Raise in the caller's thread if sampling failed."""
        if self.error is not None:
            raise RuntimeError(f"the load monitor stopped: {self.error}") from self.error

    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        return [s for s in self.samples if start <= s["t"] <= end]
