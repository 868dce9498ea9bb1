"""A private embedded stack for the fault suite: its own STACK_HOME, free ports, started and stopped by the launcher.

The fault cases stop, kill and pause Kafka, the registry and Cassandra. Doing
that to the shared stack would break every other test running against it,
so the suite starts its own copy of the core services (as
tests/stack/test_lifecycle.py does) on ports the OS hands out, with the jars
shared through a symlink, and stops it at the end whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from core import names
from core.settings import load_settings
from stack import launcher
from stack.layout import Layout
from stack.services import SERVICES
from stack.settings import StackSettings
from tests.ports import closed_port

NEEDED = (names.KAFKA, names.REGISTRY, names.CASSANDRA, names.DATASOURCE)


def free_port_env(home: Path) -> dict[str, str]:
    """The variables that move every core service (and every client) to free loopback ports and `home`."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{closed_port()}",
        "STACK_KAFKA_CONTROLLER_PORT": str(closed_port()),
        "SCHEMA_REGISTRY_URL": f"http://localhost:{closed_port()}/apis/ccompat/v7",
        "STACK_REGISTRY_MANAGEMENT_PORT": str(closed_port()),
        "CASSANDRA_HOSTS": "127.0.0.1",
        "CASSANDRA_PORT": str(closed_port()),
        "STACK_CASSANDRA_STORAGE_PORT": str(closed_port()),
        "DATASOURCE_URL": f"http://localhost:{closed_port()}/api/",
        "STACK_HOME": str(home),
    }


@dataclass(frozen=True)
class PrivateStack:
    """Settings, layout and environment of the private stack, and the faults one can inject into its services."""

    settings: StackSettings  # the launcher's; also every client's (a StackSettings is a Settings)
    layout: Layout
    env: dict[str, str]  # for subprocesses (the job, the producer CLI): the variables above

    @classmethod
    def create(cls, home: Path) -> PrivateStack:
        """Settings for a stack in `home` on free ports; nothing runs yet."""
        home.mkdir(parents=True, exist_ok=True)
        (home / "jars").symlink_to(load_settings().stack_home / "jars")
        env = free_port_env(home)
        return cls(StackSettings(**{key.lower(): value for key, value in env.items()}), Layout(home), env)

    @classmethod
    def reuse(cls, env_file: Path) -> PrivateStack:
        """A private stack already running (its variables in a JSON file), to debug one case without restarting it."""
        env = json.loads(env_file.read_text())
        return cls(StackSettings(**{key.lower(): value for key, value in env.items()}), Layout(Path(env["STACK_HOME"])), env)

    def up(self) -> None:
        launcher.up(self.settings, self.layout, list(NEEDED))

    def down(self) -> None:
        """Stop every service, paused ones included (a stopped process ignores SIGTERM until continued)."""
        for name in NEEDED:
            pid = launcher.read_pid(self.layout, name)
            if pid is not None:
                os.killpg(pid, signal.SIGCONT)
        launcher.down(self.settings, self.layout)

    def pid(self, name: str) -> int:
        pid = launcher.read_pid(self.layout, name)
        assert pid is not None, f"private {name} is not running; log {self.layout.log(name)}"
        return pid

    def stop(self, name: str) -> float:
        """A clean stop (SIGTERM to the service's group, as `make down` does); returns when it began."""
        began = time.monotonic()
        launcher.stop(self.settings, self.layout, SERVICES[name])
        return began

    def kill(self, name: str) -> float:
        """SIGKILL the service's whole process group (a crash); returns when."""
        pid = self.pid(name)
        began = time.monotonic()
        os.killpg(pid, signal.SIGKILL)
        ports = SERVICES[name].ports(self.settings).values()
        deadline = time.monotonic() + 30
        while any(launcher.port_in_use(port) for port in ports):
            assert time.monotonic() < deadline, f"{name}: ports {list(ports)} still answer 30 s after SIGKILL"
            time.sleep(0.2)
        return began

    def start(self, name: str) -> float:
        """Start it again and wait for its readiness probe; returns when it was ready (the end of the fault)."""
        launcher.start(self.settings, self.layout, SERVICES[name])
        return time.monotonic()
