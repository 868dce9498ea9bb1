"""What the embedded stack listens on: loopback only, and on the secured stack no plaintext client port.

Reads the real processes' listening sockets (psutil), so a service that
binds every interface, or a new port nobody declared, shows up here.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import psutil
import pytest

from core.settings import REPO_ROOT, Settings
from stack import launcher, services
from stack.layout import Layout
from stack.services import CORE

pytestmark = pytest.mark.integration

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    process = psutil.Process(pid)
    sockets = set()
    for member in [process, *process.children(recursive=True)]:
        try:
            connections = member.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        sockets |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return sockets


def test_every_secured_service_listens_on_loopback_only_and_where_declared(secured_stack):
    for name in CORE:
        pid = launcher.read_pid(secured_stack.layout, name)
        assert pid, f"{name} is not running"
        sockets = listening(pid)
        assert sockets, name
        assert {address for address, _ in sockets} <= LOOPBACK, f"{name} listens beyond loopback: {sockets}"
        declared = set(services.SERVICES[name].ports(secured_stack.launcher_settings).values())
        assert {port for _, port in sockets} - declared == set(), f"{name}: undeclared ports {sockets}"


def test_the_secured_kafka_port_speaks_only_tls(secured_stack):
    """Kafka's and Cassandra's client ports complete a TLS handshake with the stack's CA (plaintext is refused elsewhere)."""
    context = ssl.create_default_context(cafile=str(secured_stack.material.ca_cert))
    with socket.create_connection(("localhost", 31092), timeout=10) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("localhost", 31042), timeout=10) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_the_embedded_stream_job_driver_listens_on_loopback_only(tmp_path):
    """The launcher's env for the job: Spark's UI (it can kill jobs) and driver ports stay on 127.0.0.1."""
    env = {**os.environ, **services._stream_env(Settings(_env_file=None), Layout(tmp_path))}
    code = ("from core.settings import load_settings; from spark.session import build_spark_session; "
            "build_spark_session(load_settings(), 'bind-check', master='local[1]'); print('READY', flush=True); "
            "import time; time.sleep(120)")
    process = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.stdout.readline().strip() != "READY":
            assert process.poll() is None, "the Spark session did not start"
        time.sleep(2)  # the UI binds right after the context
        sockets = listening(process.pid)
        assert len(sockets) >= 2, f"expected the driver's RPC port and UI: {sockets}"
        assert {address for address, _ in sockets} <= LOOPBACK, f"the driver listens beyond loopback: {sockets}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
