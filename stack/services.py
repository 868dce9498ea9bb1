"""The services of the embedded stack: how each is configured, started and checked.

A `Service` says which ports it listens on, how to prepare its config and data
(render a template, format Kafka's storage once), the command that runs it in
the foreground, and a readiness probe that talks the service's real protocol:
a Kafka metadata request, `GET /subjects`, a CQL query, an HTTP request. The
launcher (stack/launcher.py) does the process handling for all of them alike.

Ports and addresses come from core.settings, so the same variables that
point the pipeline at a service also move the embedded service.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse


from core import health, names
from core.health import installed_version as _installed_version
from core.settings import REPO_ROOT, Settings
from stack import security
from stack.layout import Layout
from stack.settings import StackSettings

CONF_TEMPLATES = Path(__file__).resolve().parent / "conf"
KAFKA_CLUSTER_ID = "userstream-dev-kraft1"  # any 22-char base64-ish id; fixed so a restart keeps the log dirs
CORE = names.CORE_SERVICES  # what `make up` starts
PROBE_TIMEOUT = 3.0  # seconds per readiness probe; `up` polls until the service's startup_timeout
START_MARKER = "===== "  # the launcher writes it into a service's log at each start


class NotReady(Exception):
    """A readiness probe's answer: the service is not serving yet, and why."""


class StackError(RuntimeError):
    """A service cannot be started or stopped; the message names it and its log file."""


@dataclass(frozen=True)
class Service:
    name: str
    # Each is called with the launcher's settings (stack/settings.py): the product's plus ports, heaps, Java.
    ports: Callable[[StackSettings], dict[str, int]]
    command: Callable[[StackSettings, Layout], list[str]]
    probe: Callable[[StackSettings], str]  # returns the version when ready, raises NotReady otherwise
    prepare: Callable[[StackSettings, Layout], None] = lambda settings, layout: None
    env: Callable[[StackSettings, Layout], dict[str, str]] = lambda settings, layout: {}
    depends_on: tuple[str, ...] = ()
    startup_timeout: float = 120.0
    stop_timeout: float = 30.0
    tags: tuple[str, ...] = field(default=())
    # Why the settings point at a server of someone else's (the launcher then neither starts nor probes it), or None.
    elsewhere: Callable[[StackSettings], str | None] = lambda settings: None


# --- Java -------------------------------------------------------------------

def java_major(java: str) -> int:
    """The feature version of a `java` binary (17, 21, 25, ...)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match:
        raise StackError(f"cannot read the version of {java}: {out.strip()[:200]}")
    return int(match.group(1))


def find_java(minimum: int, preferred_home: str | None = None, maximum: int | None = None) -> str:
    """A java binary of at least `minimum` (and at most `maximum`): the preferred home, JAVA_HOME, PATH, /usr/lib/jvm."""
    candidates = []
    for home in (preferred_home, os.environ.get("JAVA_HOME")):
        if home:
            candidates.append(str(Path(home) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(shutil.which("java"))
    candidates += sorted(str(path) for path in Path("/usr/lib/jvm").glob("*/bin/java"))
    for java in candidates:
        if Path(java).exists():
            major = java_major(java)
            if major >= minimum and (maximum is None or major <= maximum):
                return java
    wanted = f"Java {minimum}" + (f" to {maximum}" if maximum else "+")
    raise StackError(f"no {wanted} found (looked at {', '.join(candidates) or 'nothing'}). Install one and set JAVA_HOME.")


def _classpath(layout: Layout, profile: str) -> str:
    folder = layout.jars / profile
    if not (folder / ".fetched").exists():
        raise StackError(f"the {profile} jars are missing in {folder}: run `make setup` first")
    return str(folder / "*")


def _render(template: str, target: Path, values: dict[str, object]) -> Path:
    """Fill `${NAME}` placeholders of a stack/conf template; an unfilled one is a bug, so fail."""
    text = (CONF_TEMPLATES / template).read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", str(value))
    leftover = re.findall(r"\$\{[A-Z_]+\}", text)
    if leftover:
        raise StackError(f"{template}: placeholders without a value: {sorted(set(leftover))}")
    # Rendered configs can hold the secured stack's passwords: private from the first byte.
    return security.write_private(target, text.encode())


def _answered(answer: health.ServiceHealth) -> health.ServiceHealth:
    """The launcher's probes are the status view's (core.health), so "ready" and "up" mean the same thing."""
    if not answer.up:
        raise NotReady(answer.detail)
    return answer


def _port_of(url_or_hostport: str) -> int:
    if "://" not in url_or_hostport:
        url_or_hostport = "kafka://" + url_or_hostport.split(",")[0]
    parsed = urlparse(url_or_hostport)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


# --- Kafka ------------------------------------------------------------------

def _kafka_ports(s: StackSettings) -> dict[str, int]:
    return {"client": _port_of(s.kafka_bootstrap_servers), "controller": s.stack_kafka_controller_port}


def _kafka_prepare(s: Settings, layout: Layout) -> None:
    """Render server.properties and format the KRaft storage on first start only."""
    data = layout.data("kafka")
    data.mkdir(parents=True, exist_ok=True)
    ports = _kafka_ports(s)
    material = security.ensure_material(s, layout) if s.stack_security else None
    properties = _render(
        "kafka.properties",
        layout.conf / "kafka.properties",
        {"KAFKA_PORT": ports["client"], "KAFKA_CONTROLLER_PORT": ports["controller"], "DATA_DIR": data,
         "CLIENT_LISTENER": "SASL_SSL" if material else "PLAINTEXT",
         "SECURITY": security.kafka_server_properties(material) if material else ""},
    )
    mode = data / "security-mode"
    if (data / "meta.properties").exists():
        formatted_secured = mode.exists() and mode.read_text().strip() == "on"
        if material and not formatted_secured:
            raise StackError(
                f"kafka: {data} was formatted without STACK_SECURITY, so it has no SCRAM users; "
                "use another STACK_HOME for the secured stack, or `make down clean` first (wipes the data)"
            )
        return
    # SCRAM users are created with the storage (StorageTool -S): the SASL listener has them from the first start.
    result = subprocess.run(
        [find_java(17), "-Xmx256m", f"-Dlog4j2.configurationFile={CONF_TEMPLATES / 'kafka-log4j2.yaml'}",
         "-cp", _classpath(layout, "kafka"), "kafka.tools.StorageTool", "format",
         "-t", KAFKA_CLUSTER_ID, "-c", str(properties), *(security.kafka_scram_arguments(material) if material else [])],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise StackError(f"kafka: formatting storage in {data} failed:\n{result.stdout}{result.stderr}")
    mode.write_text("on\n" if material else "off\n")


def _kafka_command(s: StackSettings, layout: Layout) -> list[str]:
    return [
        find_java(17), f"-Xms{s.stack_kafka_heap}", f"-Xmx{s.stack_kafka_heap}", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={CONF_TEMPLATES / 'kafka-log4j2.yaml'}",
        "-cp", _classpath(layout, "kafka"), "kafka.Kafka", str(layout.conf / "kafka.properties"),
    ]


def _kafka_probe(s: Settings) -> str:
    """Ready when the broker answers a metadata request (the status view's probe); the version is the jar's."""
    _answered(health.probe_kafka(security.client_settings(s), PROBE_TIMEOUT))
    return installed_version(Layout(s.stack_home), "kafka") or "?"


# --- Schema Registry (Apicurio, Confluent-compatible API) --------------------

def _registry_ports(s: StackSettings) -> dict[str, int]:
    return {"http": _port_of(s.schema_registry_url), "management": s.stack_registry_management_port}


def _registry_prepare(s: Settings, layout: Layout) -> None:
    """Secured: HTTPS only, basic auth, and the journal's Kafka client on SASL_SSL, in a private properties file.

    A file (not -D options) because the launcher writes each command line into the service's log.
    """
    target = layout.conf / "registry-secure.properties"
    if not s.stack_security:
        target.unlink(missing_ok=True)
        return
    material = security.ensure_material(s, layout)
    security.write_private(target, security.registry_properties(s, material, _registry_ports(s)["http"]).encode())


def _registry_command(s: StackSettings, layout: Layout) -> list[str]:
    """Apicurio with its journal in the local Kafka (kafkasql), like Confluent's registry keeps `_schemas`.

    Compatibility is not enforced on registration unless a global rule says so.
    """
    app = layout.jars / "registry" / "app" / "quarkus-run.jar"
    if not app.exists():
        raise StackError(f"registry: {app} is missing: run `make setup` first")
    ports = _registry_ports(s)
    return [
        find_java(21, s.registry_java_home), f"-Xmx{s.stack_registry_heap}", "-XX:+UseSerialGC",
        "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={ports['http']}",
        "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={ports['management']}",
        "-Dapicurio.storage.kind=kafkasql",
        f"-Dapicurio.kafkasql.bootstrap.servers={s.kafka_bootstrap_servers}",
        f"-Dapicurio.rules.global.compatibility={s.schema_compatibility}",
        "-Dquarkus.log.console.json=false",
        *([f"-Dquarkus.config.locations={layout.conf / 'registry-secure.properties'}"] if s.stack_security else []),
        "-jar", str(app),
    ]


def _registry_probe(s: Settings) -> str:
    """Ready when the Confluent-compatible API answers `GET /subjects`; the version is Apicurio's own."""
    return _answered(health.probe_registry(security.client_settings(s), PROBE_TIMEOUT)).version or "?"


# --- Cassandra ----------------------------------------------------------------

def _cassandra_ports(s: StackSettings) -> dict[str, int]:
    return {"native": s.cassandra_port, "storage": s.stack_cassandra_storage_port}


def _cassandra_prepare(s: StackSettings, layout: Layout) -> None:
    """Render cassandra.yaml: open on loopback, or (STACK_SECURITY=on) password auth and client TLS required."""
    data = layout.data("cassandra")
    data.mkdir(parents=True, exist_ok=True)
    material = security.ensure_material(s, layout) if s.stack_security else None
    _render(
        "cassandra.yaml",
        layout.conf / "cassandra.yaml",
        {"CASSANDRA_PORT": s.cassandra_port, "CASSANDRA_STORAGE_PORT": s.stack_cassandra_storage_port, "DATA_DIR": data,
         **security.cassandra_yaml_values(material)},
    )


def _cassandra_command(s: StackSettings, layout: Layout) -> list[str]:
    """CassandraDaemon the way bin/cassandra would start it on Java 17, minus the shell scripts."""
    jvm_options = [
        line.strip()
        for line in (CONF_TEMPLATES / "cassandra-jvm17.options").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    jamm = next((layout.jars / "cassandra").glob("jamm-*.jar"), None)
    if jamm is None:
        raise StackError("cassandra: the jamm agent jar is missing: run `make setup`")
    data = layout.data("cassandra")
    return [
        # Cassandra 5.0 supports Java 11 and 17 only.
        find_java(11, maximum=17), *jvm_options,
        f"-Xms{s.stack_cassandra_heap}", f"-Xmx{s.stack_cassandra_heap}",
        f"-javaagent:{jamm}",
        f"-Dcassandra.config=file://{layout.conf / 'cassandra.yaml'}",
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={layout.logs}",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        # With PasswordAuthenticator: make the default role at once, so `up` can replace it (stack/security.py).
        "-Dcassandra.superuser_setup_delay_ms=0",
        f"-Dlogback.configurationFile={CONF_TEMPLATES / 'cassandra-logback.xml'}",
        "-cp", _classpath(layout, "cassandra"),
        "org.apache.cassandra.service.CassandraDaemon",
    ]


def _cassandra_probe(s: Settings) -> str:
    """Ready when a CQL query answers; secured, once the stack's own superuser logs in (made here on first start)."""
    client = security.client_settings(s)
    if s.stack_security:
        not_yet = security.ensure_cassandra_role(client, PROBE_TIMEOUT)
        if not_yet:
            raise NotReady(not_yet)
    return _answered(health.probe_cassandra(client, PROBE_TIMEOUT)).version or "?"


# --- The local randomuser-compatible data source ------------------------------

def _datasource_port(s: Settings) -> dict[str, int]:
    return {"http": _port_of(s.datasource_url)}


STANDIN_PATH = "/api/"  # where standin.randomuser serves (also without the slash)


def is_standin(s: Settings) -> bool:
    """DATASOURCE_URL points at the local stand-in: plain http to a loopback host, at the stand-in's path.

    The port is the URL's, so the same variable that points the producer at the
    stand-in also moves it. Any other URL (randomuser.me, a server on another
    host or path) is somebody else's: used as it is, never started here.
    """
    url = urlparse(s.datasource_url)
    return url.scheme == "http" and _is_loopback(url.hostname) and url.path.rstrip("/") == STANDIN_PATH.rstrip("/") \
        and not url.query and "@" not in url.netloc


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _datasource_elsewhere(s: Settings) -> str | None:
    if is_standin(s):
        return None
    url = urlparse(s.datasource_url)
    shown = f"{url.scheme}://{url.hostname}{':' + str(url.port) if url.port else ''}{url.path}"  # never credentials
    return f"DATASOURCE_URL={shown} is not the local stand-in (http://localhost:<port>{STANDIN_PATH}): used as it is, not started here"


def _datasource_command(s: Settings, layout: Layout) -> list[str]:
    return [sys.executable, "-m", "standin.randomuser", "--host", "127.0.0.1", "--port", str(_port_of(s.datasource_url))]


def _datasource_probe(s: Settings) -> str:
    """Ready when the API serves a user."""
    return f"api {_answered(health.probe_datasource(s, PROBE_TIMEOUT)).version or '?'}"


# --- Airflow (standalone: api-server, scheduler, dag-processor, triggerer) ----

def airflow_home(layout: Layout) -> Path:
    return layout.home / "airflow"


def _airflow_env(s: Settings, layout: Layout) -> dict[str, str]:
    return {
        # standalone starts its components as `airflow ...` subprocesses found on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(airflow_home(layout)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__PORT": str(_port_of(s.airflow_url)),
        "AIRFLOW__API__HOST": "127.0.0.1",
        # Tasks report to the api-server's execution API; Airflow's default URL is port 8080, so an
        # Airflow moved with AIRFLOW_URL would send its tasks to whatever else holds 8080 ("Invalid auth token").
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{s.airflow_url.rstrip('/')}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # On a busy machine the api-server can take longer than the 5 s default to answer a task's
        # supervisor, which then kills the task before it ran (seen with 2 cores and a Spark job starting).
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
    }


def _airflow_command(s: Settings, layout: Layout) -> list[str]:
    airflow_home(layout).mkdir(parents=True, exist_ok=True)
    return [str(Path(sys.executable).parent / "airflow"), "standalone"]


AIRFLOW_PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


def _airflow_probe(s: Settings) -> str:
    """Ready when the api-server answers and reports a healthy database, scheduler and dag-processor."""
    version = _answered(health.probe_airflow(s, PROBE_TIMEOUT, require=("metadatabase", "scheduler", "dag_processor"))).version or "?"
    # `airflow standalone` writes the admin password there; the launcher's umask makes a new file 0600,
    # this makes one left by an older start private too.
    password_file = airflow_home(Layout(s.stack_home)) / AIRFLOW_PASSWORD_FILE
    if password_file.exists():
        password_file.chmod(0o600)
    return version


# --- The Spark streaming job ----------------------------------------------------

def _stream_command(s: Settings, layout: Layout) -> list[str]:
    """The job under stack/supervisor.py: restarted after a crash, stopped on a crash loop, stopped with the group."""
    return [sys.executable, "-m", "stack.supervisor", "--", sys.executable, "-m", "spark.stream_job"]


def _stream_env(s: Settings, layout: Layout) -> dict[str, str]:
    """A local-mode driver binds its RPC ports and its UI (which can kill jobs) to loopback, not every interface.

    Spark binds the UI to SPARK_LOCAL_IP, else 0.0.0.0; a driver for a remote
    cluster must stay reachable by its executors, so it is left alone then.
    """
    return {"SPARK_LOCAL_IP": "127.0.0.1"} if s.spark_master.startswith("local") else {}


def _stream_probe(s: Settings) -> str:
    """Ready once this start of the job has logged its query as started (after the schema and table checks).

    A checkpoint left by an earlier run proves nothing about this process, so
    the probe reads the log written since the launcher's latest start marker.
    """
    log = Layout(s.stack_home).log("stream")
    text = log.read_text(errors="replace") if log.exists() else ""
    this_start = text.rsplit(START_MARKER, 1)[-1]
    if " started: topic " not in this_start:
        raise NotReady("the streaming query has not started yet")
    return installed_version(Layout(s.stack_home), "stream") or "?"


# --- The web monitor (ops.monitor) ----------------------------------------------

def _monitor_command(s: Settings, layout: Layout) -> list[str]:
    return [sys.executable, "-m", "ops.monitor"]


def _monitor_probe(s: Settings) -> str:
    """Ready when /healthz answers and the first sample is taken (core.health.probe_monitor)."""
    return _answered(health.probe_monitor(s, PROBE_TIMEOUT)).version or "?"


def installed_version(layout: Layout, name: str) -> str | None:
    """The version the launcher runs, for services whose probe cannot ask them (core.health reads the jars)."""
    return _installed_version(layout.home, name)


SERVICES: dict[str, Service] = {
    service.name: service
    for service in (
        Service("kafka", _kafka_ports, _kafka_command, _kafka_probe, prepare=_kafka_prepare, startup_timeout=90),
        Service("registry", _registry_ports, _registry_command, _registry_probe, prepare=_registry_prepare, depends_on=("kafka",),
                startup_timeout=240),  # about 90 s alone; secured and on 2 busy cores, twice that
        Service("cassandra", _cassandra_ports, _cassandra_command, _cassandra_probe, prepare=_cassandra_prepare, startup_timeout=180, stop_timeout=45),
        Service("datasource", _datasource_port, _datasource_command, _datasource_probe, startup_timeout=30,
                elsewhere=_datasource_elsewhere),
        Service("airflow", lambda s: {"api": _port_of(s.airflow_url)}, _airflow_command, _airflow_probe,
                env=_airflow_env, depends_on=("kafka", "registry", "datasource"), startup_timeout=300, stop_timeout=45),
        Service("stream", lambda s: {}, _stream_command, _stream_probe, env=_stream_env,
                depends_on=("kafka", "registry", "cassandra"), startup_timeout=180, stop_timeout=45),
        # No depends_on: the monitor shows services that are down, so it may start before them.
        Service("monitor", lambda s: {"http": _port_of(s.monitor_url)}, _monitor_command, _monitor_probe, startup_timeout=60),
    )
}
