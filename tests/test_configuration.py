"""One home per kind of setting: the product reads the environment only through core/settings.py, and never
reads what only the dev launcher needs (stack/settings.py)."""

from __future__ import annotations

import re

from core.settings import REPO_ROOT, Settings
from stack.settings import StackSettings
from tests.compose.compose_model import fields_read_in

PRODUCT = [REPO_ROOT / folder for folder in ("core", "producer", "spark", "dags", "ops", "jobs")]
ENVIRONMENT_READ = re.compile(r"\bos\.(?:environ\b|getenv\b)|\bgetenv\(")
# Not configuration: spark-submit hands its JVM's port to the Python driver this way (pyspark's launch handshake).
NOT_SETTINGS = {("spark/session.py", '"PYSPARK_GATEWAY_PORT" in os.environ')}


def environment_reads() -> list[tuple[str, str]]:
    found = []
    for folder in PRODUCT:
        for path in sorted(folder.rglob("*.py")):
            for line in path.read_text().splitlines():
                code = line.split("#")[0]
                if ENVIRONMENT_READ.search(code):
                    found.append((str(path.relative_to(REPO_ROOT)), code.strip()))
    return found


def test_the_product_reads_the_environment_only_through_its_settings():
    unexplained = [(path, code) for path, code in environment_reads()
                   if not any(path == allowed and snippet in code for allowed, snippet in NOT_SETTINGS)]
    assert unexplained == [], "read it through a field of core/settings.py instead"


def test_the_product_reads_none_of_the_launchers_own_settings():
    launcher_only = set(StackSettings.model_fields) - set(Settings.model_fields)
    assert launcher_only, "stack/settings.py adds the launcher's fields"
    assert fields_read_in(StackSettings, PRODUCT) & launcher_only == set()
