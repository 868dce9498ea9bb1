"""Is each service up, in its own protocol: the one set of probes the status view, the web monitor and the launcher share.

Each probe asks what a client of the service would ask (a Kafka metadata
request, the registry's `GET /subjects`, a CQL query, an HTTP request) and
returns a `ServiceHealth`: up or down, why, and the version the service
reports. A probe never raises for a service that is down: the views exist to
be read while something is broken, and the launcher turns "down" into "not
ready yet" itself. This module sits below ops/ and stack/ and imports neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import requests
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from core import names
from core.schema_registry import REGISTRY_TRANSPORT_ERRORS, make_client
from core.settings import Settings

# A registry that cannot be reached, or answers with an error.
REGISTRY_ERRORS = (*REGISTRY_TRANSPORT_ERRORS, SchemaRegistryError)


@dataclass
class ServiceHealth:
    """One service, named as the launcher names it: up or down, why, and the version it reports."""

    name: str
    address: str
    up: bool
    detail: str
    version: str | None = None

    @property
    def core(self) -> bool:
        """The pipeline cannot run without it (names.CORE_SERVICES)."""
        return self.name in names.CORE_SERVICES


# --- Reasons, short enough for one line -------------------------------------------------


def reason(exc: BaseException) -> str:
    """One readable line for why a call failed; the class name only when the message is empty."""
    if isinstance(exc, requests.Timeout) or type(exc).__name__.endswith("Timeout"):  # requests' or httpx's
        return "no answer before the timeout"
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return kafka_reason(exc.args[0].str())
    text = str(exc)
    # cassandra-driver: "Tried connecting to [...]. Last error: Connection refused"
    cause = re.search(r"Last error: ([^'\"\]]+)", text) or re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if cause:
        return cause.group(1).strip().rstrip(".").lower()
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def kafka_reason(message: str) -> str:
    """librdkafka's "host:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms ...)" → "connection refused"."""
    connect = re.search(r"Connect to \S+ failed: ([^(]+)", message)
    if connect:
        return connect.group(1).strip().lower()
    return re.sub(r"^\S+/bootstrap: ", "", message)


# --- Kafka --------------------------------------------------------------------------------


class KafkaErrors:
    """Collects librdkafka's error callbacks: they carry the real cause ("Connection refused")."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, error: KafkaError) -> None:
        self.messages.append(kafka_reason(error.str()))

    def cause(self, fallback: BaseException) -> str:
        specific = [m for m in self.messages if "brokers are down" not in m]
        return (specific or self.messages or [reason(fallback)])[0]


def kafka_conf(settings: Settings, errors: KafkaErrors, **extra: Any) -> dict[str, Any]:
    """Client conf for a probe: errors go to `errors`, not to stderr, since the views show them."""
    return {**settings.kafka_config(), "error_cb": errors, "log_level": 0, **extra}


def probe_kafka(settings: Settings, timeout: float) -> ServiceHealth:
    """A metadata request: answers only when a broker is reachable and serving."""
    errors = KafkaErrors()
    admin = AdminClient(kafka_conf(settings, errors))
    address = settings.kafka_bootstrap_servers
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # serves error_cb, which names the cause
        return ServiceHealth(names.KAFKA, address, False, errors.cause(exc))
    if not metadata.brokers:
        return ServiceHealth(names.KAFKA, address, False, "metadata lists no broker yet")
    user_topics = [t for t in metadata.topics if not t.startswith("_")]
    detail = f"{len(metadata.brokers)} broker(s), cluster {metadata.cluster_id}, {len(user_topics)} topic(s)"
    return ServiceHealth(names.KAFKA, address, True, detail)


# --- Schema Registry -------------------------------------------------------------------------


def registry_client(settings: Settings, timeout: float):
    """The project's registry client with the probe's timeout and no retries: a view reports, it does not wait."""
    return make_client(settings, max_retries=0, timeout=timeout)


def probe_registry(settings: Settings, timeout: float) -> ServiceHealth:
    """GET /subjects: the cheapest call every Confluent-compatible registry serves."""
    try:
        subjects = registry_client(settings, timeout).get_subjects()
    except REGISTRY_ERRORS as exc:
        return ServiceHealth(names.REGISTRY, settings.schema_registry_url, False, reason(exc))
    return ServiceHealth(names.REGISTRY, settings.schema_registry_url, True, f"{len(subjects)} subject(s)",
                         version=_registry_version(settings, timeout))


def _registry_version(settings: Settings, timeout: float) -> str | None:
    """The registry's own version where it says: Apicurio's system info, else Confluent's metadata endpoint.

    Neither is part of the Confluent schema API that SchemaRegistryClient
    speaks, hence plain requests. Only a label: the registry already answered,
    so one that publishes no version is shown as "-".
    """
    base = settings.schema_registry_url.split("/apis/")[0].rstrip("/")
    for url in (f"{base}/apis/registry/v3/system/info", f"{settings.schema_registry_url.rstrip('/')}/v1/metadata/version"):
        try:
            response = requests.get(url, auth=settings.schema_registry_basic_auth(), verify=settings.schema_registry_verify(),
                                    timeout=timeout)
            if response.ok:
                return str(response.json()["version"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            continue
    return None


# --- Cassandra ----------------------------------------------------------------------------------


def cassandra_session(settings: Settings, timeout: float):
    """A short-lived (cluster, session) with a probe's timeouts; the caller shuts the cluster down."""
    from core.cassandra_schema import cassandra_cluster

    cluster = cassandra_cluster(settings, timeout)
    return cluster, cluster.connect()


def cassandra_errors() -> tuple[type[BaseException], ...]:
    """What the driver raises for a node that is down or refuses a query (imported late: the driver is heavy)."""
    from cassandra import DriverException, RequestExecutionException
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, DriverException, RequestExecutionException, OSError)


def cassandra_reason(exc: BaseException) -> str:
    """NoHostAvailable wraps one error per host; the first one is the cause."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return reason(next(iter(errors.values())))
    return reason(exc)


def probe_cassandra(settings: Settings, timeout: float) -> ServiceHealth:
    """SELECT release_version FROM system.local: a CQL round trip on the node."""
    address = f"{settings.cassandra_hosts}:{settings.cassandra_port}"
    cluster = None
    try:
        cluster, session = cassandra_session(settings, timeout)
        version = session.execute("SELECT release_version FROM system.local").one().release_version
    except cassandra_errors() as exc:
        return ServiceHealth(names.CASSANDRA, address, False, cassandra_reason(exc))
    finally:
        if cluster is not None:
            cluster.shutdown()
    return ServiceHealth(names.CASSANDRA, address, True, f"Cassandra {version}", version=version)


# --- HTTP services: the data source, Airflow, the monitor ---------------------------------------


def probe_datasource(settings: Settings, timeout: float) -> ServiceHealth:
    """One user from the API: works for randomuser.me and for the local stand-in alike."""
    try:
        response = requests.get(settings.datasource_url, params={"results": 1, "inc": "login"}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        return ServiceHealth(names.DATASOURCE, settings.datasource_url, False, reason(exc))
    if "error" in body or not body.get("results"):
        return ServiceHealth(names.DATASOURCE, settings.datasource_url, False, f"API error: {body.get('error')}")
    version = (body.get("info") or {}).get("version")
    return ServiceHealth(names.DATASOURCE, settings.datasource_url, True, "serves users", version=version)


def probe_airflow(settings: Settings, timeout: float, require: tuple[str, ...] = ()) -> ServiceHealth:
    """GET /api/v2/monitor/health: needs no login and reports each Airflow component.

    A component the api-server does not report counts as fine, unless it is in
    `require` (the launcher waits for the scheduler and dag-processor this way).
    """
    url = settings.airflow_url.rstrip("/") + "/api/v2/monitor/health"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        health = response.json()
    except (requests.RequestException, ValueError) as exc:
        return ServiceHealth(names.AIRFLOW, settings.airflow_url, False, reason(exc))
    parts = {name: (value or {}).get("status") for name, value in health.items() if isinstance(value, dict)}
    unhealthy = sorted(name for name, state in parts.items() if state not in ("healthy", None))
    unhealthy += [name for name in require if parts.get(name) != "healthy" and name not in unhealthy]
    detail = ", ".join(f"{name} {state}" for name, state in sorted(parts.items()))
    return ServiceHealth(names.AIRFLOW, settings.airflow_url, not unhealthy, detail,
                         version=_json_field(settings.airflow_url.rstrip("/") + "/api/v2/version", "version", timeout))


def probe_monitor(settings: Settings, timeout: float) -> ServiceHealth:
    """GET /healthz of the web monitor (ops.monitor): it answers once its first sample is taken."""
    url = settings.monitor_url.rstrip("/") + "/healthz"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        return ServiceHealth(names.MONITOR, settings.monitor_url, False, reason(exc))
    if not body.get("sampled"):
        return ServiceHealth(names.MONITOR, settings.monitor_url, False, "serving, first sample not taken yet")
    return ServiceHealth(names.MONITOR, settings.monitor_url, True, f"{body.get('samples', 0)} sample(s) kept",
                         version=body.get("version"))


def _json_field(url: str, key: str, timeout: float) -> str | None:
    """One field of a public JSON endpoint, as a label; None when it does not answer."""
    try:
        response = requests.get(url, timeout=timeout)
        return str(response.json()[key]) if response.ok else None
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


PROBES = {
    names.KAFKA: probe_kafka,
    names.REGISTRY: probe_registry,
    names.CASSANDRA: probe_cassandra,
    names.DATASOURCE: probe_datasource,
    names.AIRFLOW: probe_airflow,
}
"""The services every view probes; the stream job has no port (the status view reads its state file instead)."""


def installed_version(stack_home, name: str) -> str | None:
    """The version the embedded launcher runs, for services that cannot be asked (Kafka's clients are not told it).

    Reads the launcher's jar folder (`<stack_home>/jars/kafka/`) directly, so
    the views need not import the launcher; None where nothing is installed.
    """
    from pathlib import Path

    if name == names.KAFKA:
        jars = sorted((Path(stack_home) / "jars" / "kafka").glob("kafka_2.13-*.jar"))
        return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else None
    if name == names.STREAM:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "spark " + version("pyspark")
        except PackageNotFoundError:
            return None
    return None
