"""The job on a real standalone cluster: a Master and a Worker from pyspark's own spark-class."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from core.settings import REPO_ROOT
from tests.spark.harness import assert_rows_match, wait_until
from tests.spark.users import V1, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]

MASTER_URL = "spark://127.0.0.1:7077"
SPARK_HOME = Path(pyspark.__file__).parent
# Loopback everywhere: the driver, master, worker and executors find each other on 127.0.0.1.
CLUSTER_ENV = {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spark_class(main_class: str, args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), main_class, *args],
        env={**os.environ, **CLUSTER_ENV}, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM our own process group, SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def standalone_cluster(tmp_path):
    """Master on 127.0.0.1:7077 and one Worker (1 core, 1 GB); web UIs on free ports (8080/8081 are taken)."""
    assert not port_in_use(7077), "port 7077 is in use: another Spark master is running"
    master_log, worker_log = tmp_path / "master.log", tmp_path / "worker.log"
    master = spark_class(
        "org.apache.spark.deploy.master.Master", ["--host", "127.0.0.1", "--port", "7077", "--webui-port", "0"], master_log
    )
    worker = None
    try:
        wait_until(lambda: master.poll() is not None or port_in_use(7077), 60, "the master to listen on 7077")
        assert master.poll() is None, master_log.read_text(errors="replace")
        worker = spark_class(
            "org.apache.spark.deploy.worker.Worker",
            [MASTER_URL, "--host", "127.0.0.1", "--cores", "1", "--memory", "1g", "--webui-port", "0", "--work-dir", str(tmp_path / "work")],
            worker_log,
        )
        wait_until(lambda: "Registering worker" in master_log.read_text(errors="replace"), 60, "the worker to register")
        yield tmp_path
    finally:
        if worker is not None:
            stop(worker)
        stop(master)


def test_job_runs_on_a_standalone_cluster(standalone_cluster, corner_factory):
    corner = corner_factory("cluster")
    corner.register(V1)
    users = [make_user(i, corner.settings.users_topic) for i in range(150)]
    corner.produce_users(corner.serializer(V1), users)
    log = standalone_cluster / "job.log"
    with open(log, "wb") as out:
        job = subprocess.run(
            [sys.executable, "-m", "spark.stream_job", "--master", MASTER_URL, "--available-now"],
            cwd=REPO_ROOT, env={**os.environ, **corner.env(), "SPARK_LOCAL_IP": "127.0.0.1"},
            stdout=out, stderr=subprocess.STDOUT, timeout=300,
        )
    assert job.returncode == 0, log.read_text(errors="replace")[-4000:]
    worker_log = (standalone_cluster / "worker.log").read_text(errors="replace")
    assert "Asked to launch executor" in worker_log, "the work did not run on the cluster's worker"
    assert_rows_match(corner.rows(), users)
