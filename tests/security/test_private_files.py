"""Files that hold a secret are the user's only (0600): keys, passwords, certificates, configs, logs.

The generated material and the rendered configs are checked on a fresh
layout (no service needed); the launcher's logs and its children's files
with a tiny real process; the secured stack's own files on the running
private stack of conftest.py.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from core import health
from core.settings import Settings
from stack import launcher, security, services
from stack.layout import Layout
from stack.settings import for_launcher
from stack.services import NotReady, Service

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def layout(tmp_path) -> Layout:
    layout = Layout(tmp_path)
    layout.make_dirs()
    return layout


@pytest.fixture
def secured(layout) -> Settings:
    return Settings(stack_home=layout.home, stack_security=True, schema_registry_url="https://localhost:31981/apis/ccompat/v7")


def test_generated_keys_passwords_certificates_and_env_file_are_0600(secured, layout):
    material = security.ensure_material(secured, layout)
    assert mode(material.folder) == 0o700
    for path in material.files():
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
    assert {path.name for path in material.folder.iterdir()} == {path.name for path in material.files() if path.parent == material.folder}


def test_material_is_made_once_and_kept(secured, layout):
    first = security.ensure_material(secured, layout)
    keystore = first.keystore.read_bytes()
    again = security.ensure_material(secured, layout)
    assert again.passwords == first.passwords and again.keystore.read_bytes() == keystore


def test_rendered_configs_that_hold_passwords_are_0600(secured, layout):
    launcher_settings = for_launcher(secured)  # the launcher's own ports live in StackSettings
    services._cassandra_prepare(launcher_settings, layout)
    services._registry_prepare(launcher_settings, layout)
    for name in ("cassandra.yaml", "registry-secure.properties"):
        assert mode(layout.conf / name) == 0o600, name
    assert "PasswordAuthenticator" in (layout.conf / "cassandra.yaml").read_text()


def test_a_service_log_and_what_the_service_writes_are_0600(layout):
    made = layout.home / "made-by-child"
    child = f"open({str(made)!r}, 'w').write('secret'); import time; time.sleep(120)"

    def ready(settings: Settings) -> str:
        if not made.exists():
            raise NotReady("not yet")
        return "1"

    service = Service("umask-probe", lambda s: {}, lambda s, l: [sys.executable, "-c", child], ready, startup_timeout=30, stop_timeout=5)
    settings = Settings(stack_home=layout.home)
    layout.log(service.name).write_text("an older log, made before the rule\n")
    layout.log(service.name).chmod(0o644)
    launcher.start(settings, layout, service)
    try:
        assert mode(layout.log(service.name)) == 0o600
        assert mode(made) == 0o600
    finally:
        launcher.stop(settings, layout, service)


def test_the_airflow_password_file_is_made_private_once_airflow_answers(layout, monkeypatch):
    password_file = services.airflow_home(layout) / services.AIRFLOW_PASSWORD_FILE
    password_file.parent.mkdir(parents=True)
    password_file.write_text('{"admin": "generated"}')
    password_file.chmod(0o644)
    monkeypatch.setattr(health, "probe_airflow", lambda *args, **kwargs: health.ServiceHealth("airflow", "x", True, "ok", "3"))
    services._airflow_probe(Settings(stack_home=layout.home))
    assert mode(password_file) == 0o600


def test_the_running_secured_stack_keeps_its_files_private(secured_stack):
    for path in secured_stack.material.files():
        assert mode(path) == 0o600, path
    for path in [*secured_stack.layout.conf.iterdir(), *secured_stack.layout.logs.glob("*.log")]:
        assert mode(path) == 0o600, f"{path} is {oct(mode(path))}"
    kafka_conf = (secured_stack.layout.conf / "kafka.properties").read_text()
    assert "listeners=SASL_SSL://127.0.0.1:31092,CONTROLLER://127.0.0.1:31093" in kafka_conf
    assert "PLAINTEXT://" not in kafka_conf.split("listeners=", 1)[1].splitlines()[0].replace("CONTROLLER://", "")
