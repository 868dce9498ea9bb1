"""A private secured stack (STACK_SECURITY=on) in its own STACK_HOME and on its own ports.

Kafka (SASL_SSL, SCRAM-SHA-512), the registry (HTTPS, basic auth), Cassandra
(password auth, client TLS) and the data source start once per session and
are stopped at the end, whatever happens. The shared stack is never touched.
Commands run as subprocesses with only STACK_HOME, STACK_SECURITY=on and the
ports in their environment: they find the credentials through core.settings,
which reads the stack's secure.env, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.settings import REPO_ROOT, Settings, load_settings
from stack import launcher, security
from stack.layout import Layout
from stack.services import CORE
from stack.settings import StackSettings

PORTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:31092",
    "STACK_KAFKA_CONTROLLER_PORT": "31093",
    "SCHEMA_REGISTRY_URL": "https://localhost:31081/apis/ccompat/v7",
    "STACK_REGISTRY_MANAGEMENT_PORT": "31091",
    "CASSANDRA_PORT": "31042",
    "STACK_CASSANDRA_STORAGE_PORT": "31000",
    "DATASOURCE_URL": "http://localhost:31765/api/",
}
# Settings a developer's shell or .env may carry that would point a subprocess elsewhere.
_CLEARED = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
            "KAFKA_SSL_CA_LOCATION", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "SCHEMA_REGISTRY_CA_LOCATION",
            "CASSANDRA_USERNAME", "CASSANDRA_PASSWORD", "CASSANDRA_SSL", "CASSANDRA_SSL_CA_LOCATION",
            "SPARK_CHECKPOINT_DIR", "USERS_TOPIC", "DEAD_LETTER_TOPIC", "CASSANDRA_KEYSPACE", "CASSANDRA_TABLE")


@dataclass
class SecuredStack:
    home: Path
    layout: Layout
    launcher_settings: StackSettings  # what `python -m stack up` was given: ports, home, STACK_SECURITY=on
    env: dict[str, str]  # a subprocess environment: the ports, STACK_HOME, STACK_SECURITY=on, nothing secret

    @property
    def material(self) -> security.Material:
        return security.load_material(self.layout)

    def client_settings(self) -> Settings:
        """What load_settings() gives a command in `env`: the ports, plus secure.env for the credentials."""
        return Settings(_env_file=(str(self.home / "secure.env"),), **{key.lower(): value for key, value in self.env_vars().items()})

    def env_vars(self) -> dict[str, str]:
        return {**PORTS, "STACK_HOME": str(self.home), "STACK_SECURITY": "on"}

    def run(self, *args: str, timeout: float = 300, log: Path | None = None, **overrides: str) -> subprocess.CompletedProcess:
        """A `python -m ...` command against the secured stack; `overrides` replace settings (a wrong password...)."""
        env = {**self.env, **overrides}
        if log is None:
            return subprocess.run([sys.executable, "-m", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        with log.open("w") as out:  # kept under the stack home, so the secret scan reads it too
            result = subprocess.run([sys.executable, "-m", *args], env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    text=True, timeout=timeout)
        return subprocess.CompletedProcess(result.args, result.returncode, log.read_text(), "")

    def passwords(self) -> dict[str, str]:
        return json.loads(self.material.credentials.read_text())


@pytest.fixture(scope="session")
def secured_stack(tmp_path_factory) -> SecuredStack:
    home = tmp_path_factory.mktemp("secured-stack-home")
    (home / "jars").symlink_to(load_settings().stack_home / "jars")
    env_vars = {**PORTS, "STACK_HOME": str(home), "STACK_SECURITY": "on"}
    launcher_settings = StackSettings(**{key.lower(): value for key, value in env_vars.items()})
    layout = Layout(home)
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(env_vars)
    env["SPARK_CHECKPOINT_DIR"] = str(home / "data" / "spark-checkpoints" / "users")
    stack = SecuredStack(home, layout, launcher_settings, env)
    try:
        launcher.up(launcher_settings, layout, list(CORE))
        yield stack
    finally:
        launcher.down(launcher_settings, layout)
