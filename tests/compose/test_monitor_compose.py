"""Static checks of the monitor and Prometheus in docker-compose.yml and docker/prometheus.yml.

Prometheus must scrape the address and path the monitor serves, the monitor
must bind where MONITOR_URL points and be published on the embedded stack's
port, and it must see the files it reads (the job's state and progress files,
Airflow's password file) where the settings say they are.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import yaml

from core.settings import REPO_ROOT, Settings
from ops.monitor.app import create_app
from tests.compose.compose_model import host_port, published_ports, settings_env_names

PROMETHEUS_CONFIG = REPO_ROOT / "docker" / "prometheus.yml"


def mounts(service: dict) -> dict[str, str]:
    """Container path -> source (volume name or host path) of a service's short-syntax volumes."""
    return {entry.split(":")[1]: entry.split(":")[0] for entry in service.get("volumes", [])}


def test_prometheus_scrapes_the_monitors_metrics(compose, services):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    monitor_host, monitor_port = host_port(compose["x-pipeline-env"]["MONITOR_URL"])
    assert static["targets"] == [f"{monitor_host}:{monitor_port}"]
    assert monitor_host in services
    routes = {route.path for route in create_app(Settings(_env_file=None), start_sampler=False).routes}
    assert job["metrics_path"] in routes


def test_prometheus_reads_the_config_file_from_the_repo(services):
    """The file `--config.file` names is mounted from the one the test above checks."""
    prometheus = services["prometheus"]
    (config,) = [arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")]
    assert REPO_ROOT / mounts(prometheus)[config] == PROMETHEUS_CONFIG
    assert prometheus["depends_on"] == {"monitor": {"condition": "service_healthy"}}


def test_the_monitor_binds_where_monitor_url_points(compose, services, monkeypatch):
    monitor = services["monitor"]
    command = monitor["command"]
    _, port = host_port(compose["x-pipeline-env"]["MONITOR_URL"])
    assert command[:3] == ["python", "-m", "ops.monitor"]
    assert command[command.index("--host") + 1] == "0.0.0.0", "the monitor must listen beyond loopback"
    assert command[command.index("--port") + 1] == str(port)
    for name in settings_env_names(Settings):
        monkeypatch.delenv(name, raising=False)
    default_port = host_port(Settings(_env_file=None).monitor_url)[1]
    assert published_ports(monitor).get(default_port) == port, "published on the embedded monitor's port"


def test_the_monitor_sees_the_job_files_and_the_airflow_password(compose, services):
    env = compose["x-pipeline-env"]
    volumes = mounts(services["monitor"])
    checkpoint_parent = str(PurePosixPath(env["SPARK_CHECKPOINT_DIR"]).parent)  # state and progress files live beside the checkpoint
    assert volumes[checkpoint_parent] == "spark-checkpoints"
    assert volumes[f"{env['STACK_HOME']}/airflow"] == "airflow-auth"
    assert volumes[f"{env['STACK_HOME']}/monitor"] == "monitor-history"
    named = {source for service in services.values() for source in mounts(service).values() if not source.startswith((".", "/"))}
    assert named - set(compose["volumes"]) == set(), "named volumes a service mounts must be declared"
