"""Process liveness and memory with psutil, for the launcher's pid files: shared by the launcher and the status view.

The launcher (stack/) writes `<STACK_HOME>/run/<service>.pid` for each
service's process-group leader; it stops a service by its group, and the
status view (ops/status/processes.py) reads the same files without importing
the launcher. Both ask these questions, answered here once: which pid a file
names, whether that process still runs (a zombie, exited but not reaped, does
not), whether anything of its group is left, and how much memory it holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def read_pid_file(path: Path) -> int | None:
    """The pid in a launcher pid file, None when the file is missing or empty."""
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return int(text) if text.isdigit() else None


def alive(pid: int) -> psutil.Process | None:
    """The process if it runs (a zombie, exited but not reaped, does not)."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.NoSuchProcess:
        return None


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process of the process group is left, children the leader left behind included."""
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue  # exited while we looked
    return False


def tree_rss_mb(process: psutil.Process) -> int | None:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a child that exited in between counts for nothing
    return total // (1024 * 1024)
