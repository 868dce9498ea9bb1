"""The embedded launcher's processes: pid, memory and log per service, read from its pid files with psutil.

The launcher (stack/) writes `<STACK_HOME>/run/<service>.pid` and logs to
`<STACK_HOME>/logs/<service>.log`. That layout is all the status view needs,
so it reads the files itself instead of importing the launcher (which imports
the probes of core.health: importing it back would make a circle). Under
docker-compose, or against remote services, there are no pid files and the
probes alone tell the state. Nothing here changes a file: a stale pid file is
reported, and left for the launcher to clean up. Liveness and memory are
core/processes.py's, which the launcher uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import names
from core.processes import alive, read_pid_file, tree_rss_mb


@dataclass
class ProcessInfo:
    """One launcher-started service's process, or the trace it left (a pid file whose process is gone)."""

    name: str
    pid: int | None  # None: not running
    rss_mb: int | None  # the whole process tree (Airflow standalone is several processes)
    log: str
    stale_pid: int | None = None  # the pid file names a process that no longer runs


def launcher_processes(stack_home: Path) -> dict[str, ProcessInfo]:
    """One entry per service that has a pid file under `<stack_home>/run/`; none when the launcher never ran here."""
    run, logs = Path(stack_home) / "run", Path(stack_home) / "logs"
    rows: dict[str, ProcessInfo] = {}
    for name in names.ALL_SERVICES:
        pid = read_pid_file(run / f"{name}.pid")
        if pid is None:
            continue
        process = alive(pid)
        log = str(logs / f"{name}.log")
        if process is None:
            rows[name] = ProcessInfo(name, None, None, log, stale_pid=pid)
        else:
            rows[name] = ProcessInfo(name, pid, tree_rss_mb(process), log)
    return rows
