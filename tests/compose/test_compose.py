"""Static checks of docker-compose.yml: schema, images, health, dependencies, env, ports.

No Docker engine runs here, so nothing is started: every test reads the file
and compares it with the code (core.settings) or with the Compose
Specification. Each test names what would break in a user's `docker compose up`.
"""

from __future__ import annotations

import re

import jsonschema
import pytest

from core.settings import REPO_ROOT, Settings
from tests.compose.compose_model import (
    compose_variables,
    fields_read_in,
    env_file_names,
    host_port,
    image_tag,
    published_ports,
    service_environment,
    settings_env_names,
    unbraced_variables,
)
from tests.compose.conftest import ENV_EXAMPLE

# Services that run the project's Python code and so read core.settings.
# (The brief's list; test_every_project_image_service_is_listed keeps it complete.)
CODE_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "register-schemas",
    "cassandra-schema",
    "datasource",
    "spark-stream",
    "spark-worker-1",
    "spark-worker-2",
    "monitor",
}
# Built from the project's images but running only a JVM (no project code).
JVM_ONLY_SERVICES = {"spark-master"}
PROJECT_IMAGES = ("userstream:", "userstream-spark:")


def schema_errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def is_one_shot(service: dict) -> bool:
    """One-shot jobs say so with `restart: "no"`; everything else is long-running."""
    return str(service.get("restart", "no")) == "no" and "healthcheck" not in service


# Code that runs in the containers; stack/ is the embedded launcher, which compose replaces.
CONTAINER_CODE = [REPO_ROOT / folder for folder in ("core", "ops", "producer", "spark", "dags")]


def required_settings_env() -> dict[str, object]:
    """Variables of the settings the containers' code reads, except those defaulting to None (opt-in).

    Set explicitly, since many defaults point at loopback. The launcher's own
    settings (stack/settings.py: heap sizes, embedded ports) are not in
    `Settings`, so compose has nothing to set for them.
    """
    read = {name.upper() for name in fields_read_in(Settings, CONTAINER_CODE)}
    return {
        name: default
        for name, default in settings_env_names(Settings).items()
        if default is not None and name in read
    }


# --- The Compose Specification ---------------------------------------------------


def test_compose_file_matches_the_compose_specification(compose, compose_schema):
    assert schema_errors(compose_schema, compose) == []


# --- Images -------------------------------------------------------------------------


def test_every_service_has_a_pinned_image(services):
    problems = []
    for name, service in services.items():
        image = service.get("image")
        if not image:
            problems.append(f"{name}: no image (a build needs an image: name:tag too)")
            continue
        tag = image_tag(image)
        if tag is None or tag == "latest" or not re.search(r"\d", tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version tag")
    assert problems == []


def test_every_project_image_service_is_listed(services):
    """A new service on the project's images must be classified: reads settings, or JVM only."""
    project = {name for name, s in services.items() if str(s.get("image", "")).startswith(PROJECT_IMAGES)}
    assert project == CODE_SERVICES | JVM_ONLY_SERVICES


def test_project_images_are_built_from_dockerfiles_in_the_repo(services):
    for name, service in services.items():
        if str(service.get("image", "")).startswith(PROJECT_IMAGES):
            build = service.get("build")
            assert build, f"{name} uses a project image but has no build section"
            dockerfile = REPO_ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"


# --- Health and start order ---------------------------------------------------------


def test_long_running_services_have_healthchecks(services):
    missing = [
        name
        for name, service in services.items()
        if str(service.get("restart", "no")) != "no" and not (service.get("healthcheck") or {}).get("test")
    ]
    assert missing == []


def test_every_service_is_long_running_with_healthcheck_or_a_one_shot(services):
    """No service in between: a restart policy means a healthcheck, `restart: "no"` means a one-shot."""
    unclear = [
        name for name, s in services.items() if "healthcheck" not in s and str(s.get("restart", "no")) != "no"
    ]
    assert unclear == []


def test_depends_on_uses_conditions_that_can_be_met(services):
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without conditions only waits for the container to start")
            continue
        for target, spec in depends.items():
            condition = (spec or {}).get("condition")
            if target not in services:
                problems.append(f"{name} depends on unknown service {target}")
            elif condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name} waits for {target} to be healthy, but {target} has no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(services[target]):
                problems.append(f"{name} waits for {target} to exit, but {target} is long-running")
            elif condition not in {"service_healthy", "service_completed_successfully"}:
                problems.append(f"{name} -> {target}: condition {condition!r} does not wait for readiness")
    assert problems == []


def test_dependencies_have_no_cycle(services):
    graph = {name: set((s.get("depends_on") or {})) for name, s in services.items()}
    done: set[str] = set()
    while graph:
        ready = {name for name, deps in graph.items() if deps <= done}
        assert ready, f"dependency cycle among {sorted(graph)}"
        done |= ready
        graph = {name: deps for name, deps in graph.items() if name not in ready}


# --- The settings the code reads ----------------------------------------------------


def test_every_product_setting_is_read_by_the_code_the_containers_run():
    """A setting nothing in the product reads belongs to the launcher (stack/settings.py), or nowhere."""
    assert set(Settings.model_fields) - fields_read_in(Settings, CONTAINER_CODE) == set()


def test_pipeline_env_names_are_settings_fields(compose):
    """A misspelt variable (SCHEMA_REGISTRY_URI) would be ignored and the loopback default used."""
    known = set(settings_env_names(Settings))
    assert sorted(set(compose["x-pipeline-env"]) - known) == []


@pytest.mark.parametrize("service_name", sorted(CODE_SERVICES))
def test_code_services_set_every_setting(services, service_name):
    env = service_environment(services[service_name])
    missing = sorted(set(required_settings_env()) - set(env))
    assert missing == [], (
        f"{service_name} would run with the code's local defaults for {missing}: set them in x-pipeline-env"
    )


@pytest.mark.parametrize("service_name", sorted(CODE_SERVICES))
def test_code_services_env_is_valid_settings(services, service_name, monkeypatch):
    """The values must parse: Settings built from exactly this environment, no .env file."""
    for name in settings_env_names(Settings):
        monkeypatch.delenv(name, raising=False)
    env = service_environment(services[service_name])
    for name in settings_env_names(Settings):
        if name in env:
            monkeypatch.setenv(name, env[name])
    settings = Settings(_env_file=None)
    assert settings.kafka_bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"]


def test_in_network_addresses_name_real_services(services, compose):
    """Every address in the pipeline env must be a service (and port) that the file defines."""
    env = compose["x-pipeline-env"]
    names = set(services)

    kafka_host, kafka_port = host_port(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0])
    assert kafka_host in names
    advertised = service_environment(services[kafka_host])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{kafka_host}:{kafka_port}" in advertised, "the bootstrap address is not an advertised listener"

    registry_host, registry_port = host_port(env["SCHEMA_REGISTRY_URL"])
    assert registry_host in names
    listeners = service_environment(services[registry_host])["SCHEMA_REGISTRY_LISTENERS"]
    assert host_port(listeners)[1] == registry_port

    for host in env["CASSANDRA_HOSTS"].split(","):
        assert host.strip() in names

    source_host, source_port = host_port(env["DATASOURCE_URL"])
    command = services[source_host]["command"]
    assert command[command.index("--port") + 1] == str(source_port)
    assert command[command.index("--host") + 1] == "0.0.0.0", "the data source must listen beyond loopback"

    master_host, master_port = host_port(env["SPARK_MASTER"])
    command = services[master_host]["command"]
    assert command[command.index("--port") + 1] == str(master_port)

    airflow_host, airflow_port = host_port(env["AIRFLOW_URL"])
    assert airflow_port in published_ports(services[airflow_host]).values()


def test_host_ports_match_the_embedded_defaults(services, compose, exposed_services, monkeypatch):
    """Host tools use the same defaults for both stacks: each service is published where the embedded one listens.

    Cassandra is published only with docker-compose.expose.yml, so its ports count from there.
    """
    for name in settings_env_names(Settings):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(_env_file=None)
    env = compose["x-pipeline-env"]
    expected = {  # in-network host -> the embedded default's port on the host
        host_port(env["KAFKA_BOOTSTRAP_SERVERS"])[0]: host_port(defaults.kafka_bootstrap_servers)[1],
        host_port(env["SCHEMA_REGISTRY_URL"])[0]: host_port(defaults.schema_registry_url)[1],
        env["CASSANDRA_HOSTS"]: defaults.cassandra_port,
        host_port(env["DATASOURCE_URL"])[0]: host_port(defaults.datasource_url)[1],
        host_port(env["AIRFLOW_URL"])[0]: host_port(defaults.airflow_url)[1],
    }
    for service_name, port in expected.items():
        published = {**published_ports(services[service_name]), **published_ports(exposed_services.get(service_name, {}))}
        assert port in published, f"{service_name} is not published on {port}"


def test_host_ports_are_unique(services, exposed_services):
    seen: dict[int, str] = {}
    for name, service in [*services.items(), *exposed_services.items()]:
        for port in published_ports(service):
            assert port not in seen, f"host port {port} is published by both {seen[port]} and {name}"
            seen[port] = name


# --- Variables from .env ---------------------------------------------------------------


def test_env_example_lists_every_variable(compose_text):
    documented = env_file_names(ENV_EXAMPLE.read_text())
    used = set(compose_variables(compose_text))
    assert sorted(used - set(documented)) == [], ".env.example misses variables docker-compose.yml reads"
    assert sorted(set(documented) - used) == [], ".env.example documents variables nothing reads"


def test_secrets_have_no_default(compose_text):
    """A password with a default would start a stack with a well-known password."""
    for name, uses in compose_variables(compose_text).items():
        if re.search(r"PASSWORD|SECRET", name):
            assert all(op == ":?" for op, _ in uses), f"{name} must be ${{{name}:?...}}, not defaulted"


def test_only_braced_variables(compose_text):
    """`$VAR` is easy to miss in review and in the .env.example check; use ${VAR}."""
    assert unbraced_variables(compose_text) == set()
