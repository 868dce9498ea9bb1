"""The launcher's process handling on throwaway processes (no service, no JVM): start, pid files, stop.

A service is a process group: `stop` must end every process in it, also one
that ignores SIGTERM (SIGKILL after the service's timeout), and a pid file
naming an exited process, or an exited child nobody reaped (a zombie), is not
a running service.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from core.settings import Settings
from stack import launcher
from stack.layout import Layout
from stack.services import Service

# A leader that obeys SIGTERM with a child in its group that ignores it: the leader goes, the child
# stays until SIGKILL reaches the group (a launcher watching only the leader would leave it behind).
# The child says when it ignores SIGTERM (a file in the service's working directory, its STACK_HOME).
CHILD = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('child-ready', 'w').close(); time.sleep(300)"
STUBBORN = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {CHILD!r}]); time.sleep(300)"
POLITE = "import time; time.sleep(300)"


def service(code: str, stop_timeout: float = 1.0) -> Service:
    return Service(name="sleeper", ports=lambda settings: {}, command=lambda settings, layout: [sys.executable, "-c", code],
                   probe=lambda settings: "sleeper 1", stop_timeout=stop_timeout)


@pytest.fixture
def home(tmp_path) -> tuple[Settings, Layout]:
    layout = Layout(tmp_path)
    layout.make_dirs()
    return Settings(stack_home=tmp_path), layout


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the group."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def test_stop_kills_what_is_left_of_the_group_after_the_timeout(home, capsys):
    settings, layout = home
    stubborn = service(STUBBORN)
    assert launcher.start(settings, layout, stubborn)
    pid = launcher.read_pid(layout, "sleeper")
    wait_for(lambda: (layout.home / "child-ready").exists(), 30, "the leader's child to ignore SIGTERM")
    assert len(group_members(pid)) == 2
    try:
        assert launcher.stop(settings, layout, stubborn)
        left = group_members(pid)
    finally:
        for member in group_members(pid):  # never leave a sleeper behind, whatever failed
            os.kill(member, 9)
    assert left == [], "a process of the group outlived stop"
    assert not layout.pidfile("sleeper").exists()
    assert "down: sleeper    stopped (killed after 1s)" in capsys.readouterr().out


def test_stop_of_a_group_that_obeys_sigterm_needs_no_kill(home, capsys):
    settings, layout = home
    polite = service(POLITE, stop_timeout=30)
    assert launcher.start(settings, layout, polite)
    pid = launcher.read_pid(layout, "sleeper")
    assert launcher.stop(settings, layout, polite)
    assert group_members(pid) == []
    assert capsys.readouterr().out.splitlines()[-1] == "down: sleeper    stopped"
    assert launcher.stop(settings, layout, polite) is False, "a second stop finds nothing to stop"


def test_a_pid_file_of_a_zombie_or_an_exited_process_is_not_running(home):
    _, layout = home
    zombie = subprocess.Popen(["true"])  # exits at once; not reaped until wait()
    wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, 10, "the zombie")
    try:
        layout.pidfile("sleeper").write_text(f"{zombie.pid}\n")
        assert launcher.read_pid(layout, "sleeper") is None
        assert not layout.pidfile("sleeper").exists(), "the stale pid file is removed"
    finally:
        zombie.wait()
    layout.pidfile("sleeper").write_text(f"{zombie.pid}\n")  # reaped now: no such process
    assert launcher.read_pid(layout, "sleeper") is None
    layout.pidfile("sleeper").write_text(f"{os.getpid()}\n")
    assert launcher.read_pid(layout, "sleeper") == os.getpid()


class ReadyAfter:
    """A probe that answers `seconds` after its first call (about when its process started); records both times."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.first_call: float | None = None
        self.ready_at: float | None = None

    def __call__(self, settings) -> str:
        now = time.monotonic()
        self.first_call = self.first_call or now
        if now - self.first_call < self.seconds:
            raise launcher.NotReady("warming up")
        self.ready_at = self.ready_at or now
        return "1"


def sleeper(name: str, probe, depends_on: tuple[str, ...] = (), code: str = POLITE) -> Service:
    return Service(name=name, ports=lambda settings: {}, command=lambda settings, layout: [sys.executable, "-c", code],
                   probe=probe, depends_on=depends_on, startup_timeout=30)


def test_up_starts_a_service_once_what_it_needs_is_ready_and_the_others_meanwhile(home, monkeypatch, capsys):
    settings, layout = home
    probes = {"slow": ReadyAfter(1.5), "needs_slow": ReadyAfter(0), "free": ReadyAfter(0)}
    services = {"slow": sleeper("slow", probes["slow"]), "needs_slow": sleeper("needs_slow", probes["needs_slow"], ("slow",)),
                "free": sleeper("free", probes["free"])}
    monkeypatch.setattr(launcher, "SERVICES", services)
    try:
        assert launcher.up(settings, layout, ["needs_slow", "free"]) == ["slow", "needs_slow", "free"]
        capsys.readouterr()
        assert launcher.up(settings, layout, ["needs_slow"]) == []
        again = capsys.readouterr().out.splitlines()
        assert [line.split("(")[0] for line in again] == ["up: needs_slow already running "], "a running dependency nobody named is not mentioned"
    finally:
        launcher.down(settings, layout)
    assert probes["free"].ready_at < probes["slow"].ready_at, "free waited for slow, which it does not need"
    assert probes["needs_slow"].first_call >= probes["slow"].ready_at, "needs_slow started before slow was ready"


def test_up_reports_the_failed_start_and_starts_nothing_that_needs_it(home, monkeypatch):
    settings, layout = home
    services = {"broken": sleeper("broken", ReadyAfter(5), code="import sys; sys.exit(3)"),
                "needs_broken": sleeper("needs_broken", ReadyAfter(0), ("broken",)), "free": sleeper("free", ReadyAfter(0))}
    monkeypatch.setattr(launcher, "SERVICES", services)
    try:
        with pytest.raises(launcher.StackError, match="^broken: exited with code 3 while starting"):
            launcher.up(settings, layout, ["needs_broken", "free"])
        assert launcher.read_pid(layout, "free") is not None, "a service that does not need the broken one still starts"
        assert not layout.log("needs_broken").exists(), "needs_broken was started without broken"
    finally:
        launcher.down(settings, layout)
