"""The README's promises, checked against the code so the docs cannot drift."""

from __future__ import annotations

import itertools
import re

from core.settings import REPO_ROOT, Settings
from stack.settings import StackSettings

README = (REPO_ROOT / "README.md").read_text()
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", MAKEFILE, flags=re.M))


def test_the_two_commands_come_first_and_exist():
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert {"demo", "test"} <= make_targets()


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert steps[-1] == "make test"


def test_every_make_command_the_readme_names_exists():
    named = set(re.findall(r"`make ([a-z][\w-]*)", README))
    assert named, "the README names make commands"
    assert named <= make_targets(), f"README names targets the Makefile lacks: {named - make_targets()}"


def table_variables(marker: str) -> set[str]:
    """The variables in the first column of the first table after `marker` (a cell may name several: `A` / `B`)."""
    rest = README[README.index(marker):]
    lines = rest[rest.index("\n|") + 1:].splitlines()
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines)
    return {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}


def test_configuration_table_lists_every_setting():
    """The product's table is core/settings.py's fields; the launcher's table is what stack/settings.py adds."""
    product = {name.upper() for name in Settings.model_fields}
    assert table_variables("## Configuration") == product
    launcher_only = {name.upper() for name in StackSettings.model_fields} - product
    assert table_variables("The embedded stack's launcher") == launcher_only


LAYOUT_CHECKED = ("core", "producer", "spark", "ops", "stack", "standin")


def test_the_layout_table_names_every_module():
    """Each folder's row names each of its modules (and sub-packages), so the table cannot fall behind the code."""
    rows = {row.split("|")[1].strip(): row for row in README.splitlines() if row.startswith("| `")}
    unnamed = {}
    for folder in LAYOUT_CHECKED:
        row = rows[f"`{folder}/`"]
        modules = {path.stem for path in (REPO_ROOT / folder).glob("*.py")} - {"__init__", "__main__"}
        modules |= {path.parent.name for path in (REPO_ROOT / folder).glob("*/__init__.py")}
        missing = sorted(name for name in modules if f"`{name}`" not in row)
        if missing:
            unnamed[folder] = missing
    assert unnamed == {}, "name these modules in README's Layout table"
