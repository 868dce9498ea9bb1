"""Fetch every jar the embedded stack runs, through Maven, from stack/pom.xml.

Each profile of the pom (kafka, cassandra, spark, registry) is resolved into its
own folder under `<stack_home>/jars/`, so services never share a class path. A
folder carries a stamp with the pom's hash: a second run with the same pom
downloads nothing and takes about a second.

Usage:
    python -m stack fetch          # what `make setup` runs
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from stack.layout import Layout

POM = Path(__file__).resolve().parent / "pom.xml"
PROFILES = ("kafka", "cassandra", "spark", "registry")


class FetchError(RuntimeError):
    """Maven could not resolve a profile; the message carries Maven's own error lines."""


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def fetch_all(layout: Layout) -> None:
    """Resolve every profile that is missing or stale; print one line per profile."""
    if shutil.which("mvn") is None:
        raise FetchError("fetch: `mvn` not found. Install Maven 3.8+ (e.g. apt-get install maven) and run `make setup` again.")
    digest = pom_digest()
    for profile in PROFILES:
        target = layout.jars / profile
        stamp = target / ".fetched"
        if stamp.exists() and stamp.read_text().strip() == digest:
            print(f"fetch: {profile:<9} up to date ({_count_jars(target)} files in {target})")
            continue
        print(f"fetch: {profile:<9} resolving through Maven (first run downloads; the registry archive is ~160 MB) ...", flush=True)
        _copy_dependencies(profile, target)
        if profile == "spark":
            _drop_jars_pyspark_ships(target)
        if profile == "registry":
            _unpack_registry(target)
        stamp.write_text(digest + "\n")
        print(f"fetch: {profile:<9} done ({_count_jars(target)} files)")


def _copy_dependencies(profile: str, target: Path) -> None:
    """`mvn dependency:copy-dependencies` for one profile into a fresh folder."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "-P", profile,
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line][:8]
        raise FetchError(
            f"fetch: Maven could not resolve the '{profile}' jars (exit {result.returncode}).\n"
            + "\n".join(errors)
            + "\nCheck that Maven Central is reachable (`mvn dependency:get -Dartifact=junit:junit:4.13.2`) and run `make setup` again."
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _artifact_name(jar: str) -> str:
    """`scala-library-2.12.19.jar` -> `scala-library`: the name without its version."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", jar)


def _drop_jars_pyspark_ships(target: Path) -> None:
    """Remove jars pyspark already has; a second, older copy on the class path breaks Spark.

    `--packages` avoids this by resolving against Spark's own modules; with a
    plain jar folder we have to do it by artifact name.
    """
    import pyspark

    shipped = {_artifact_name(jar.name) for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    for jar in target.glob("*.jar"):
        if _artifact_name(jar.name) in shipped:
            jar.unlink()


def _unpack_registry(target: Path) -> None:
    """Unpack Apicurio's runnable archive; `quarkus-run.jar` sits at its root."""
    archives = list(target.glob("apicurio-registry-app-*.tar.gz"))
    if len(archives) != 1:
        raise FetchError(f"fetch: expected one apicurio-registry-app archive in {target}, found {len(archives)}")
    app = target / "app"
    with tarfile.open(archives[0]) as archive:
        archive.extractall(app, filter="data")
    if not (app / "quarkus-run.jar").exists():
        raise FetchError(f"fetch: {archives[0].name} has no quarkus-run.jar at its root; check the apicurio version in stack/pom.xml")
    archives[0].unlink()


def _count_jars(folder: Path) -> int:
    return sum(1 for path in folder.iterdir() if not path.name.startswith(".")) if folder.exists() else 0
