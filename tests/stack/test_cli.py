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


def test_a_test_run_stops_what_it_or_its_command_started_and_nothing_else(monkeypatch):
    """`make test` leaves the machine as it found it: the demo's tests start the stream job and Airflow themselves."""
    from stack import __main__ as cli
    from stack.launcher import ServiceStatus

    alive = {"kafka"}  # running before the test run: left alone
    stopped = []

    def status(settings, layout):
        return [ServiceStatus(name, "up", 1, {}, "", "", "") if name in alive else ServiceStatus(name, "down", None, {}, "", "", "")
                for name in ("kafka", "registry", "cassandra", "stream", "airflow")]

    def up(settings, layout, names):
        new = [name for name in names if name not in alive]
        alive.update(new)
        return new

    def command(_):
        alive.update({"stream", "airflow"})  # what the demo's tests start
        return 0

    monkeypatch.setattr(cli.launcher, "status", status)
    monkeypatch.setattr(cli.launcher, "up", up)
    monkeypatch.setattr(cli.launcher, "down", lambda settings, layout, names: stopped.extend(names))
    monkeypatch.setattr(cli.subprocess, "call", command)
    assert cli.run_with_stack(None, None, ["pytest"], ["kafka", "registry", "cassandra"]) == 0
    assert sorted(stopped) == ["airflow", "cassandra", "registry", "stream"]
