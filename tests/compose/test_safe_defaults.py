"""docker-compose.yml is safe by default: loopback ports, nothing dangerous published, Airflow's secrets set, CQL auth on.

Static checks read the compose files; the two scripts that make secrets
(docker/airflow-init.sh, docker/cassandra-entrypoint.sh) are run for real with
stand-ins for the programs only a container has (`airflow`, `cqlsh`, the
Cassandra image's entrypoint), so their files, modes and statements are
checked without a Docker engine.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from cryptography.fernet import Fernet

from core.settings import REPO_ROOT
from tests.compose.compose_model import compose_variables, published_ports, service_environment
from tests.compose.conftest import EXPOSE_FILE

BIND = "${BIND_ADDRESS:-127.0.0.1}"
AIRFLOW_INIT = REPO_ROOT / "docker" / "airflow-init.sh"
CASSANDRA_ENTRYPOINT = REPO_ROOT / "docker" / "cassandra-entrypoint.sh"
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


def port_entries(services: dict[str, dict]):
    for name, service in services.items():
        for entry in service.get("ports") or []:
            yield name, entry


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- Ports ---------------------------------------------------------------------------------


def test_every_published_port_binds_to_loopback_unless_bind_address_widens_it(services, exposed_services):
    entries = list(port_entries(services)) + list(port_entries(exposed_services))
    assert entries, "the files publish something"
    for name, entry in entries:
        if isinstance(entry, dict):
            assert entry.get("host_ip") == BIND, f"{name}: {entry} has no host_ip {BIND}"
        else:
            assert str(entry).startswith(f"{BIND}:"), f"{name}: {entry!r} binds every interface; write \"{BIND}:HOST:CONTAINER\""


def test_bind_address_defaults_to_loopback_everywhere(compose_text):
    uses = compose_variables(compose_text)["BIND_ADDRESS"] + compose_variables(EXPOSE_FILE.read_text())["BIND_ADDRESS"]
    assert set(uses) == {(":-", "127.0.0.1")}


@pytest.mark.parametrize("name", ["cassandra", "spark-master"])
def test_cassandra_and_the_spark_master_are_published_only_on_request(services, exposed_services, name):
    assert not services[name].get("ports"), f"{name} is published by docker-compose.yml"
    assert published_ports(exposed_services[name]), f"docker-compose.expose.yml does not publish {name}"


def test_no_main_file_port_reaches_the_spark_master_rpc(services):
    assert all(7077 not in published_ports(service).values() for service in services.values())


def test_the_expose_override_is_a_valid_compose_file(exposed, compose_schema):
    errors = [e.message for e in jsonschema.Draft201909Validator(compose_schema).iter_errors(exposed)]
    assert errors == []


def test_the_expose_override_only_adds_ports_to_services_of_the_main_file(services, exposed_services):
    for name, service in exposed_services.items():
        assert name in services
        assert set(service) == {"ports"}, f"{name}: the override should only publish ports"


# --- Airflow's Fernet key ----------------------------------------------------------------------


def test_airflow_components_read_the_fernet_key_from_the_shared_volume(services):
    for name in AIRFLOW_SERVICES:
        env = service_environment(services[name])
        assert "AIRFLOW__CORE__FERNET_KEY" not in env, f"{name}: an empty FERNET_KEY stores connections in clear"
        key_file = env["AIRFLOW_FERNET_KEY_FILE"]
        assert env["AIRFLOW__CORE__FERNET_KEY_CMD"] == f"cat {key_file}"
        mounted = {entry.split(":")[1] for entry in services[name]["volumes"] if entry.startswith("airflow-auth:")}
        assert any(key_file.startswith(folder + "/") for folder in mounted), f"{name} does not mount the key's volume"


@pytest.fixture
def airflow_init(tmp_path):
    """Run docker/airflow-init.sh with a stand-in `airflow` that reads the key the way Airflow would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "airflow-calls"
    stub = bin_dir / "airflow"
    # Airflow runs FERNET_KEY_CMD and refuses a key Fernet cannot load; the stand-in does the same.
    stub.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        f"key=$(sh -c \"$AIRFLOW__CORE__FERNET_KEY_CMD\")\n"
        f"{sys.executable} -c 'import sys; from cryptography.fernet import Fernet; Fernet(sys.argv[1].encode())' \"$key\"\n"
        f"echo \"$@\" >> {calls}\n"
    )
    stub.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    home = tmp_path / "airflow-home"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_ADMIN_PASSWORD": "admin-secret",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json.generated"),
        "AIRFLOW_FERNET_KEY_FILE": str(home / "fernet.key"),
        "AIRFLOW__CORE__FERNET_KEY_CMD": f"cat {home / 'fernet.key'}",
    }

    def run(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(AIRFLOW_INIT)], env={**env, **extra}, capture_output=True, text=True, timeout=60)

    return run, home, calls


def test_airflow_init_generates_a_private_fernet_key_once_and_keeps_it(airflow_init):
    run, home, calls = airflow_init
    first = run()
    assert first.returncode == 0, first.stderr
    key_file = home / "fernet.key"
    key = key_file.read_text().strip()
    Fernet(key.encode())
    assert mode(key_file) == 0o600
    assert calls.read_text().split() == ["db", "migrate"], "the key exists before `airflow db migrate` reads it"
    second = run()
    assert second.returncode == 0, second.stderr
    assert key_file.read_text().strip() == key, "a restart keeps the key (else the database becomes unreadable)"


def test_airflow_init_takes_a_given_key_and_refuses_a_different_one_later(airflow_init):
    run, home, _ = airflow_init
    given = Fernet.generate_key().decode()
    assert run(AIRFLOW_FERNET_KEY=given).returncode == 0
    assert (home / "fernet.key").read_text().strip() == given
    refused = run(AIRFLOW_FERNET_KEY=Fernet.generate_key().decode())
    assert refused.returncode != 0 and "rotate-fernet-key" in refused.stderr


def test_airflow_init_writes_the_admin_password_file_0600(airflow_init):
    run, home, _ = airflow_init
    assert run().returncode == 0
    password_file = home / "simple_auth_manager_passwords.json.generated"
    assert json.loads(password_file.read_text()) == {"admin": "admin-secret"}
    assert mode(password_file) == 0o600


# --- CQL authentication ----------------------------------------------------------------------


def test_cassandra_runs_with_password_auth_and_a_password_from_env(services, compose_text):
    cassandra = services["cassandra"]
    assert cassandra["entrypoint"][-1].endswith("cassandra-entrypoint.sh")
    assert any(entry.startswith("./docker/cassandra-entrypoint.sh:") for entry in cassandra["volumes"])
    assert "CASSANDRA_PASSWORD" in " ".join(cassandra["healthcheck"]["test"]), "healthy only once the role logs in"
    assert all(op == ":?" for op, _ in compose_variables(compose_text)["CASSANDRA_PASSWORD"]), "no default password"
    env = service_environment(cassandra)
    assert env["CASSANDRA_USERNAME"] == "${CASSANDRA_USERNAME:-userstream}" and "CASSANDRA_PASSWORD" in env


def test_code_services_log_in_to_cassandra(services):
    for name in ("cassandra-schema", "spark-stream", "airflow-scheduler"):
        env = service_environment(services[name])
        assert env["CASSANDRA_USERNAME"] == service_environment(services["cassandra"])["CASSANDRA_USERNAME"], name
        assert env["CASSANDRA_PASSWORD"] == service_environment(services["cassandra"])["CASSANDRA_PASSWORD"], name


CASSANDRA_YAML_FORMS = {
    "scalar": "cluster_name: x\nauthenticator: AllowAllAuthenticator\nauthorizer: AllowAllAuthorizer\nrole_manager: CassandraRoleManager\n",
    "parameterized": "cluster_name: x\nauthenticator:\n  class_name : org.apache.cassandra.auth.AllowAllAuthenticator\n"
                     "authorizer:\n  class_name: AllowAllAuthorizer\nrole_manager: CassandraRoleManager\n",
}


@pytest.mark.parametrize("form", sorted(CASSANDRA_YAML_FORMS))
def test_the_cassandra_entrypoint_turns_on_auth_creates_the_role_and_locks_the_default(tmp_path, form):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "cassandra.yaml").write_text(CASSANDRA_YAML_FORMS[form])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls, role_made = tmp_path / "cqlsh-calls", tmp_path / "role-made"
    # cqlsh: our role logs in only after CREATE ROLE ran; every call is recorded.
    (bin_dir / "cqlsh").write_text(
        "#!/usr/bin/env bash\n"
        f"printf '%s\\n' \"$*\" >> {calls}\n"
        f"case \"$*\" in *'CREATE ROLE'*) touch {role_made};; esac\n"
        f"if [[ \"$2\" == userstream ]] && [[ ! -e {role_made} ]]; then exit 2; fi\n"
    )
    (bin_dir / "docker-entrypoint.sh").write_text(f"#!/usr/bin/env bash\necho \"entrypoint $*\"\nfor i in $(seq 50); do grep -q 'ALTER ROLE' {calls} 2>/dev/null && exit 0; sleep 0.1; done\n")
    for tool in ("cqlsh", "docker-entrypoint.sh"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CASSANDRA_CONF": str(conf),
           "CASSANDRA_USERNAME": "userstream", "CASSANDRA_PASSWORD": "it's-secret"}
    if shutil.which("python3", path=env["PATH"]) is None:
        pytest.skip("python3 is needed by the entrypoint")
    result = subprocess.run(["bash", str(CASSANDRA_ENTRYPOINT), "cassandra", "-f"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "entrypoint cassandra -f" in result.stdout
    yaml_text = (conf / "cassandra.yaml").read_text()
    assert "authenticator: PasswordAuthenticator\n" in yaml_text and "authorizer: CassandraAuthorizer\n" in yaml_text
    assert "AllowAll" not in yaml_text and "role_manager: CassandraRoleManager" in yaml_text
    statements = calls.read_text()
    assert "-u cassandra -p cassandra -e CREATE ROLE IF NOT EXISTS \"userstream\" WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = 'it''s-secret'" in statements
    assert "-u userstream -p it's-secret -e ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false" in statements
