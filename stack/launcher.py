"""Start, stop and inspect the embedded stack's processes.

Each service runs in its own process group with its output in
`.stack/logs/<name>.log` and its pid in `.stack/run/<name>.pid` (read back
with core/processes.py, as the status view does). `up` is
idempotent (a running, ready service is left alone), refuses a port that
something else holds, and waits for the service's real readiness probe while
printing progress. `down` stops in reverse dependency order (SIGTERM, then
SIGKILL after the service's timeout) and then checks that nothing still holds
the service's ports. Each entry point takes the product's settings or the
launcher's (stack/settings.py); given the product's, it adds the launcher's own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from core.processes import alive, group_alive, read_pid_file
from core.settings import Settings
from stack.layout import Layout
from stack.settings import StackSettings, for_launcher
from stack.services import SERVICES, START_MARKER, NotReady, Service, StackError

PROGRESS_EVERY = 5.0  # seconds between "still waiting" lines
# `up` starts services in threads; their prepare steps share files (the secured stack's CA, keystores and
# passwords, made by whichever service comes first), so one prepares at a time. They take milliseconds.
_PREPARING = threading.Lock()


def ordered(names: list[str]) -> list[str]:
    """`names` plus their dependencies, dependencies first."""
    result: list[str] = []

    def visit(name: str) -> None:
        if name not in SERVICES:
            raise StackError(f"unknown service '{name}'; known: {', '.join(SERVICES)}")
        for dependency in SERVICES[name].depends_on:
            visit(dependency)
        if name not in result:
            result.append(name)

    for name in names:
        visit(name)
    return result


def read_pid(layout: Layout, name: str) -> int | None:
    """The pid of our process for `name`, if it still runs; the pid file of an exited process (or a zombie) is removed."""
    path = layout.pidfile(name)
    pid = read_pid_file(path)
    if pid is not None and alive(pid) is None:
        path.unlink(missing_ok=True)
        return None
    return pid


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(layout: Layout, name: str, lines: int = 15) -> str:
    path = layout.log(name)
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(settings: Settings, layout: Layout, service: Service, cancel: threading.Event | None = None,
          quiet: bool = False) -> bool:
    """Start one service and wait until it is ready; False if it was already running or is somebody else's.

    `cancel` set (the user pressed Ctrl-C while other services started) ends the wait for readiness.
    `quiet`: say nothing of a service that is already running or external (a dependency nobody named).
    """
    settings = for_launcher(settings)
    elsewhere = service.elsewhere(settings)
    if elsewhere:
        if not quiet:
            print(f"up: {service.name:<10} external   {elsewhere}")
        return False
    pid = read_pid(layout, service.name)
    if pid is not None:
        version = wait_ready(settings, layout, service, pid, cancel=cancel)
        if not quiet:
            print(f"up: {service.name:<10} already running (pid {pid}, {version})")
        return False
    for purpose, port in service.ports(settings).items():
        if port_in_use(port):
            raise StackError(
                f"{service.name}: port {port} ({purpose}) is already taken by another process. "
                f"Stop it (`ss -ltnp | grep :{port}` shows which), or move the service with its setting in core/settings.py."
            )
    with _PREPARING:
        service.prepare(settings, layout)
        command = service.command(settings, layout)
    log = layout.log(service.name)
    # A log can print a secret (Airflow prints its admin password): private, and so is all the child writes.
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        log.chmod(0o600)  # a log made before this rule
        out.write(f"\n{START_MARKER}{time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group, so `down` reaches its children too
            env={**os.environ, **service.env(settings, layout)},
            cwd=layout.home,
            umask=0o077,  # files the service makes (Airflow's password file, data, its own logs) are the user's only
        )
    layout.pidfile(service.name).write_text(f"{process.pid}\n")
    version = wait_ready(settings, layout, service, process.pid, process, cancel)
    ports = ", ".join(f"{port}" for port in service.ports(settings).values()) or "-"
    print(f"up: {service.name:<10} ready      pid {process.pid:<7} port {ports:<11} {version:<14} log {log}")
    return True


def wait_ready(settings: StackSettings, layout: Layout, service: Service, pid: int, process: subprocess.Popen | None = None,
               cancel: threading.Event | None = None) -> str:
    """Poll the service's probe until it answers; fail fast if the process dies, or when `cancel` is set."""
    cancel = cancel or threading.Event()
    started = time.monotonic()
    last_progress = started
    reason = "not probed yet"
    while True:
        if process is not None and process.poll() is not None:
            layout.pidfile(service.name).unlink(missing_ok=True)
            raise StackError(
                f"{service.name}: exited with code {process.returncode} while starting. "
                f"Log: {layout.log(service.name)}\n--- last lines ---\n{log_tail(layout, service.name)}"
            )
        try:
            return service.probe(settings)
        except NotReady as exc:
            reason = str(exc)
        elapsed = time.monotonic() - started
        if elapsed > service.startup_timeout:
            raise StackError(
                f"{service.name}: not ready after {service.startup_timeout:.0f}s (last answer: {reason}). "
                f"Log: {layout.log(service.name)}\n--- last lines ---\n{log_tail(layout, service.name)}"
            )
        if time.monotonic() - last_progress >= PROGRESS_EVERY:
            print(f"up: {service.name:<10} waiting ({elapsed:.0f}s): {reason[:100]}", flush=True)
            last_progress = time.monotonic()
        if cancel.wait(1):
            raise StackError(f"{service.name}: start interrupted; `make down` stops what was started")


def stop(settings: Settings, layout: Layout, service: Service) -> bool:
    """SIGTERM the service's process group, SIGKILL it after the timeout; False if it was not running."""
    settings = for_launcher(settings)
    pid = read_pid(layout, service.name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + service.stop_timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.5)
    killed = _group_alive(pid)
    if killed:
        _signal_group(pid, signal.SIGKILL)
        while _group_alive(pid):
            time.sleep(0.2)
    layout.pidfile(service.name).unlink(missing_ok=True)
    _wait_ports_free(settings, service)
    print(f"down: {service.name:<10} stopped{' (killed after ' + str(int(service.stop_timeout)) + 's)' if killed else ''}")
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process of the group is left; reaps the leader first if it is our own child."""
    _reap(pgid)
    return group_alive(pgid)


def _reap(pid: int) -> None:
    """Collect the exit status if the leader is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_ports_free(settings: StackSettings, service: Service, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    busy = [port for port in service.ports(settings).values() if port_in_use(port)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.5)
        busy = [port for port in busy if port_in_use(port)]
    if busy:
        raise StackError(f"{service.name}: stopped, but port(s) {busy} still answer; another process holds them")


def up(settings: Settings, layout: Layout, names: list[str]) -> list[str]:
    """Start `names` and their dependencies; returns those this call started, dependencies first.

    Each service starts as soon as the services it depends on are ready, not
    after every service before it in the list: Cassandra's start-up overlaps
    Kafka's and the registry's (the whole core: 41 s one after another, 34 s
    so on 2 cores). A service whose dependency failed is not started; the
    first failure in dependency order is raised, once every start ended. A
    dependency nobody named is mentioned only when it has to be started.
    """
    settings = for_launcher(settings)
    layout.make_dirs()
    wanted = ordered(names)
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=len(wanted) or 1, thread_name_prefix="up")
    starts: dict[str, Future[bool]] = {}
    try:
        for name in wanted:  # dependencies come first, so theirs are already submitted
            needs = {dependency: starts[dependency] for dependency in SERVICES[name].depends_on if dependency in starts}
            starts[name] = pool.submit(_start_when_ready, settings, layout, SERVICES[name], needs, cancel, name not in names)
        wait(starts.values())
    except BaseException:  # Ctrl-C: the waits in the other threads end too, instead of holding the exit
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    failed = [future.exception() for future in starts.values() if future.exception() is not None]
    if failed:
        raise next((error for error in failed if not isinstance(error, DependencyFailed)), failed[0])
    return [name for name, future in starts.items() if future.result()]


class DependencyFailed(StackError):
    """Not started, because a service it depends on failed to start (that failure is the one reported)."""


def _start_when_ready(settings: StackSettings, layout: Layout, service: Service, needs: dict[str, Future[bool]],
                      cancel: threading.Event, quiet: bool) -> bool:
    """`start(service)` once every service it needs is ready; `quiet` for a dependency nobody named."""
    for dependency, future in needs.items():
        if future.exception() is not None:  # waits for that start to end
            raise DependencyFailed(f"{service.name}: not started, because {dependency} did not start")
    return start(settings, layout, service, cancel, quiet)


def down(settings: Settings, layout: Layout, names: list[str] | None = None) -> None:
    """Stop `names` (default: every service), dependents first."""
    settings = for_launcher(settings)
    everything = ordered(list(SERVICES))
    wanted = everything if names is None else [name for name in everything if name in names]
    for name in reversed(wanted):
        stop(settings, layout, SERVICES[name])


@dataclass
class ServiceStatus:
    name: str
    state: str  # "up", "down", "starting"
    pid: int | None
    ports: dict[str, int]
    version: str
    log: Path
    detail: str = ""


def status(settings: Settings, layout: Layout) -> list[ServiceStatus]:
    """One row per service: whether our process runs and answers its probe (memory: the status view, ops/status)."""
    settings = for_launcher(settings)
    rows = []
    for name, service in SERVICES.items():
        pid = read_pid(layout, name)
        state, version, detail = "down", "", ""
        if pid is None and service.elsewhere(settings):
            state, detail = "external", service.elsewhere(settings) or ""
        elif pid is not None:
            try:
                version, state = service.probe(settings), "up"
            except NotReady as exc:
                state, detail = "starting", str(exc)
        rows.append(ServiceStatus(name, state, pid, service.ports(settings), version, layout.log(name), detail))
    return rows

