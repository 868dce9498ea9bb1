"""The spark-submit command in spark/stream_job.py's docstring, run exactly as written, so the manual cannot drift.

It submits the entry file jobs/stream_job.py, as docker/spark-submit.sh does.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import spark.stream_job
from core.settings import REPO_ROOT
from tests.spark.harness import assert_rows_match
from tests.spark.users import V1, make_user

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def documented_command() -> str:
    """The shell command that starts with PYSPARK_PYTHON= in the module docstring, continuation lines joined."""
    lines = spark.stream_job.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("PYSPARK_PYTHON="))
    command = []
    for line in lines[start:]:
        command.append(line.strip().removesuffix("\\").strip())
        if not line.rstrip().endswith("\\"):
            break
    return " ".join(command)


def test_documented_spark_submit_command_runs_the_job(corner_factory, tmp_path):
    command = documented_command()
    assert "spark-submit" in command and command.endswith(" jobs/stream_job.py --available-now")
    corner = corner_factory("submit")
    corner.register(V1)
    users = [make_user(i, corner.settings.users_topic) for i in range(50)]
    corner.produce_users(corner.serializer(V1), users)
    log = tmp_path / "submit.log"
    with open(log, "wb") as out:
        result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env={**os.environ, **corner.env()},
                                stdout=out, stderr=subprocess.STDOUT, timeout=300)
    assert result.returncode == 0, log.read_text(errors="replace")[-4000:]
    assert_rows_match(corner.rows(), users)
