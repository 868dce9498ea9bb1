"""`python -m stack`'s command line: pytest's options pass through `make test PYTEST_ARGS=...` untouched."""

from __future__ import annotations

import pytest

from stack.__main__ import parse_args


@pytest.mark.parametrize("pytest_args", [
    ["-x", "--durations=20"],
    ["tests/producer", "-x"],
    ["-m", "not faults", "--junitxml=/tmp/x.xml", "tests"],
    [],
])
def test_test_passes_every_argument_to_pytest_in_order(pytest_args):
    assert parse_args(["test", *pytest_args]).pytest_args == pytest_args


def test_other_commands_still_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit):
        parse_args(["up", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_up_keeps_its_own_options():
    args = parse_args(["up", "--all"])
    assert args.all and args.services == []
