"""The launcher's own behaviour: a second, private stack on other ports and in a fresh home.

It starts Kafka (formatting its storage), the registry, Cassandra and the data
source from nothing, checks `up` twice is harmless, that a registered schema
survives a registry restart, that a taken port and a service that dies at
start-up give errors naming the service, and that `down` leaves nothing
listening and no JVM behind. The shared stack `make test` started is not
touched. Each test asks for the state it needs (`running` starts whatever an
earlier test stopped), so they pass alone and in any order.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import psutil
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from core.settings import REPO_ROOT, load_settings
from stack import launcher
from stack.layout import Layout
from stack.services import CORE, StackError
from stack.settings import StackSettings

pytestmark = pytest.mark.integration

PORTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:29092",
    "STACK_KAFKA_CONTROLLER_PORT": "29093",
    "SCHEMA_REGISTRY_URL": "http://localhost:28181/apis/ccompat/v7",
    "STACK_REGISTRY_MANAGEMENT_PORT": "28191",
    "CASSANDRA_PORT": "29042",
    "STACK_CASSANDRA_STORAGE_PORT": "27000",
    "DATASOURCE_URL": "http://localhost:28765/api/",
}


@dataclass
class PrivateStack:
    settings: StackSettings
    layout: Layout
    env: dict[str, str]  # what a subprocess needs to reach it
    first_up: list[str] | None = None  # what the first `up`, in a fresh home, started


@pytest.fixture(scope="module")
def private_home(tmp_path_factory) -> PrivateStack:
    """Settings and layout of a private stack in a fresh home (the shared stack's jars linked in); nothing started."""
    home = tmp_path_factory.mktemp("stack-home")
    (home / "jars").symlink_to(load_settings().stack_home / "jars")
    env = {**PORTS, "STACK_HOME": str(home)}
    return PrivateStack(StackSettings(**{key.lower(): value for key, value in env.items()}), Layout(home), env)


@pytest.fixture(scope="module")
def private_stack(private_home):
    """The private stack started once from nothing; whatever happens, it is stopped at the end."""
    try:
        private_home.first_up = launcher.up(private_home.settings, private_home.layout, list(CORE))
        yield private_home
    finally:
        launcher.down(private_home.settings, private_home.layout)


@pytest.fixture
def running(private_stack) -> PrivateStack:
    """The private stack up, whatever an earlier test left: `up` starts only what is down."""
    launcher.up(private_stack.settings, private_stack.layout, list(CORE))
    return private_stack


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """Running, not merely an exited child this process has not reaped (a zombie)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_from_nothing_is_ready_and_up_again_is_harmless(private_stack, running):
    settings, layout = running.settings, running.layout
    assert private_stack.first_up == list(CORE), "the first up, in a fresh home, started every core service"
    assert (layout.data("kafka") / "meta.properties").exists(), "Kafka storage was formatted"
    assert {row.name: row.state for row in launcher.status(settings, layout) if row.name in CORE} == dict.fromkeys(CORE, "up")

    assert launcher.up(settings, layout, list(CORE)) == [], "a second up starts nothing"


def test_schema_survives_a_registry_restart(running):
    settings, layout = running.settings, running.layout
    client = SchemaRegistryClient(settings.schema_registry_config())
    schema = Schema(json.dumps({"type": "record", "name": "Kept", "fields": [{"name": "a", "type": "string"}]}), "AVRO")
    schema_id = client.register_schema("kept-value", schema)

    launcher.down(settings, layout, ["registry"])
    assert not listening(28181)
    launcher.up(settings, layout, ["registry"])

    fresh = SchemaRegistryClient(settings.schema_registry_config())
    assert fresh.get_latest_version("kept-value").schema_id == schema_id
    assert json.loads(fresh.get_schema(schema_id).schema_str)["name"] == "Kept"


def test_a_taken_port_is_refused_with_the_service_named(private_home, tmp_path):
    settings = private_home.settings
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        crowded = settings.model_copy(update={"datasource_url": f"http://localhost:{port}/api/"})
        with pytest.raises(StackError, match=rf"datasource: port {port} .*already taken"):
            launcher.up(crowded, Layout(tmp_path), ["datasource"])


def test_a_service_that_dies_at_start_names_itself_and_its_log(private_home, tmp_path):
    settings = private_home.settings
    layout = Layout(tmp_path)
    (tmp_path / "jars").symlink_to(settings.stack_home / "jars")
    broken = settings.model_copy(update={"cassandra_port": 29142, "stack_cassandra_storage_port": 27100, "stack_cassandra_heap": "lots"})
    with pytest.raises(StackError) as failure:
        launcher.up(broken, layout, ["cassandra"])
    assert "cassandra: exited with code" in str(failure.value)
    assert str(layout.log("cassandra")) in str(failure.value)


def test_status_and_down_through_the_command_line_leave_nothing_behind(running):
    settings, layout = running.settings, running.layout
    run_env = {**os.environ, **running.env}
    pids = [row.pid for row in launcher.status(settings, layout) if row.pid]
    assert pids, "the private stack is running"

    status = subprocess.run([sys.executable, "-m", "stack", "status"], env=run_env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    states = {words[0]: words[1] for words in map(str.split, status.stdout.splitlines()) if len(words) > 1}
    assert {name: states.get(name) for name in CORE} == dict.fromkeys(CORE, "up"), status.stdout

    down = subprocess.run([sys.executable, "-m", "stack", "down"], env=run_env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    for port in (29092, 29093, 28181, 29042, 28765):
        assert not listening(port), f"port {port} still listening after down"
    assert not [pid for pid in pids if alive(pid)], "a process outlived down"
