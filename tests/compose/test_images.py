"""Static checks of the images docker-compose.yml builds (docker/*.Dockerfile).

Versions must agree across the two ways to run: the Airflow base image with
requirements.lock, Spark/Cassandra/Confluent tags with stack/pom.xml, and
the files the Dockerfiles copy and the commands the services run must exist.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from packaging.requirements import Requirement

from core.settings import REPO_ROOT
from tests.compose.compose_model import dockerfile_copy_sources, dockerfile_from_images, image_tag

DOCKER = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*Dockerfile"))
SPARK_REQUIREMENTS = DOCKER / "spark-requirements.txt"
SPARK_SUBMIT = DOCKER / "spark-submit.sh"
PROJECT_PACKAGES = {"core", "ops", "producer", "spark", "stack", "standin"}


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pom_property(name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(REPO_ROOT / "stack" / "pom.xml").getroot()
    return root.find(f"m:properties/m:{name}", ns).text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(dockerfile):
    for image in dockerfile_from_images(dockerfile):
        tag = image_tag(image)
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{dockerfile.name}: FROM {image} is not pinned"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_files_exist(dockerfile):
    missing = [src for src in dockerfile_copy_sources(dockerfile) if not (REPO_ROOT / src).exists()]
    assert missing == [], f"{dockerfile.name} copies files that are not in the repo"


def test_airflow_image_matches_the_lock():
    """Same Airflow, and the Python the lock was frozen on (its header says which), or its wheels may not install."""
    (base,) = dockerfile_from_images(DOCKER / "Dockerfile")
    version, _, python = image_tag(base).partition("-python")
    assert version == lock_pins()["apache-airflow"]
    frozen_on = re.search(r"on Python (\d+\.\d+)", (REPO_ROOT / "requirements.lock").read_text().splitlines()[0])
    assert python == frozen_on.group(1), "the Airflow image runs another Python than the lock was frozen on"


def test_spark_versions_agree():
    """pyspark in the image comes from the lock; the jars from the pom; both must be one Spark."""
    assert lock_pins()["pyspark"] == pom_property("spark.version")


def test_cassandra_image_matches_the_embedded_version(services):
    assert image_tag(services["cassandra"]["image"]) == pom_property("cassandra.version")


def test_confluent_images_share_one_platform_version(services):
    tags = {image_tag(s["image"]) for s in services.values() if s["image"].startswith("confluentinc/")}
    assert len(tags) == 1, f"mixed Confluent Platform versions: {tags}"


def test_spark_requirements_are_locked():
    pins = lock_pins()
    for line in SPARK_REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert canonical(Requirement(line).name) in pins, f"{line} is not in requirements.lock"


# --- What the services run exists ---------------------------------------------------


def module_commands(services: dict) -> dict[str, str]:
    """service -> module for services whose command is `python -m module ...`."""
    found = {}
    for name, service in services.items():
        command = service.get("command") or []
        if command[:2] == ["python", "-m"]:
            found[name] = command[2]
    return found


def test_python_modules_the_services_run_exist(services):
    modules = module_commands(services)
    assert modules, "expected python -m commands in docker-compose.yml"
    missing = {name: module for name, module in modules.items() if importlib.util.find_spec(module) is None}
    assert missing == {}


def test_scripts_the_services_run_exist(services):
    for name, service in services.items():
        for word in service.get("command") or []:
            if str(word).startswith("/opt/userstream/"):
                local = REPO_ROOT / str(word).removeprefix("/opt/userstream/")
                assert local.is_file(), f"{name} runs {word}, but {local} does not exist"


# --- The Spark image has what the job imports -----------------------------------------


def imported_modules(path) -> set[str]:
    """Absolute module names imported anywhere in a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def reachable_imports(entry) -> tuple[set[str], set[str]]:
    """(project packages, third-party top-level packages) reachable from `entry` through the project's modules."""
    seen_files, project, third_party, queue = set(), set(), set(), [entry]
    while queue:
        path = queue.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top in PROJECT_PACKAGES:
                project.add(top)
                spec = importlib.util.find_spec(module)
                if spec and spec.origin and spec.origin.endswith(".py"):
                    queue.append(type(entry)(spec.origin))
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return project, third_party


def submitted_job():
    """The Python file docker/spark-submit.sh hands to spark-submit, in the checkout."""
    (path,) = re.findall(r"/opt/userstream/(\S+\.py)", SPARK_SUBMIT.read_text())
    job = REPO_ROOT / path
    assert job.is_file(), f"docker/spark-submit.sh submits {path}, which does not exist"
    return job


def test_spark_image_copies_the_job_and_every_project_package_it_imports():
    job = submitted_job()
    project, _ = reachable_imports(job)
    copied = {src.rstrip("/") for src in dockerfile_copy_sources(DOCKER / "spark.Dockerfile")}
    assert sorted({job.relative_to(REPO_ROOT).parts[0], *project} - copied) == [], "add COPY lines to docker/spark.Dockerfile"


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Distributions pip installs for these requirements, read from this venv's metadata."""
    closure, queue = set(), list(requirements)
    while queue:
        req = queue.pop()
        name = canonical(req.name)
        if name in closure:
            continue
        closure.add(name)
        for dep in importlib.metadata.requires(req.name) or []:
            dep_req = Requirement(dep)
            # A dependency counts when its marker holds for no extra or for one the requirement asks for.
            extras = {""} | set(req.extras)
            if dep_req.marker is None or any(dep_req.marker.evaluate({"extra": extra}) for extra in extras):
                queue.append(dep_req)
    return closure


def test_spark_image_has_every_package_the_job_imports():
    job = submitted_job()
    requirements = [
        Requirement(line)
        for line in SPARK_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # docker/spark.Dockerfile installs pyspark itself, next to these requirements.
    available = installed_closure([*requirements, Requirement("pyspark")])
    distributions = importlib.metadata.packages_distributions()
    missing = {
        top: distributions.get(top, ["?"])
        for top in reachable_imports(job)[1]
        if not {canonical(d) for d in distributions.get(top, [])} & available
    }
    assert missing == {}, "add these to docker/spark-requirements.txt"


@pytest.mark.parametrize("script", sorted(DOCKER.glob("*.sh")), ids=lambda p: p.name)
def test_container_scripts_parse_and_fail_fast(script):
    """bash -n catches a syntax error that would only show inside a container; set -e keeps failures loud."""
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "set -euo pipefail" in script.read_text()
