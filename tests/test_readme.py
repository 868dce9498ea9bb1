"""The README's promises, checked against the code so the docs cannot drift."""

from __future__ import annotations

import re

from core.settings import REPO_ROOT, Settings

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


def test_configuration_table_lists_every_setting():
    table_variables = set(re.findall(r"^\| `([A-Z_]+)`", README, flags=re.M)) | set(re.findall(r"`([A-Z_]+)` / `", README))
    table_variables |= set(re.findall(r"/ `([A-Z_]+)`", README))
    settings_variables = {name.upper() for name in Settings.model_fields}
    assert settings_variables - table_variables == set(), "settings missing from the README's configuration table"
    undocumented_extra = table_variables - settings_variables - {"USER_STREAM_SCHEDULE"}
    assert undocumented_extra == set(), f"README documents variables the code does not read: {undocumented_extra}"
