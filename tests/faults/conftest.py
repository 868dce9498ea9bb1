"""Fixtures of the fault suite: one private stack for all cases, a lane per case, the fault table.

Run alone with `.venv/bin/python -m pytest tests/faults -m faults`; set
FAULT_TABLE=/path/table.md to also get the table there. The private stack
is stopped at the end, also when a case fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.faults.lane import Lane
from tests.faults.private_stack import PrivateStack
from tests.faults.table import FaultRow, FaultTable

TABLE = FaultTable()


@pytest.fixture(scope="package")
def private_stack(tmp_path_factory):
    """Kafka, registry, Cassandra and the data source on free ports in a fresh home; down at the end, whatever happened.

    FAULT_STACK_ENV=<json of a running private stack's variables> reuses that one and leaves it running (debugging).
    """
    if os.environ.get("FAULT_STACK_ENV"):
        yield PrivateStack.reuse(Path(os.environ["FAULT_STACK_ENV"]))
        return
    stack = PrivateStack.create(tmp_path_factory.mktemp("fault-stack"))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="package")
def fault_table(tmp_path_factory):
    yield TABLE
    if TABLE.rows:
        TABLE.write(tmp_path_factory.getbasetemp(), os.environ.get("FAULT_TABLE"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so the case's row can say how it ended."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def case(request, fault_table):
    """This case's row of the fault table; its outcome and duration are filled in after the test."""
    row = FaultRow(case=request.node.name.removeprefix("test_"))
    fault_table.rows.append(row)
    started = time.monotonic()
    yield row
    row.seconds = round(time.monotonic() - started, 1)
    row.outcome = outcome(getattr(request.node, "report_call", None))


def outcome(report) -> str:
    """passed / failed, xfailed / xpassed for a case marked as a known bug, error when the call never ran."""
    if report is None:
        return "error"
    if hasattr(report, "wasxfail"):
        return "xfailed (known bug)" if report.skipped else "xpassed"
    return "passed" if report.passed else "failed"


@pytest.fixture
def lane(private_stack, tmp_path, case):
    """Make this case's lanes (corner + supervised job) on the private stack; their jobs are stopped afterwards.

    A case that failed before its figures were taken gets them here, as far as it got.
    """
    made: list[Lane] = []

    def make(name: str, **env: str) -> Lane:
        made.append(Lane.create(private_stack, tmp_path, name, **env))
        return made[-1]

    yield make
    for item in made:
        try:
            if case.rows_landed is None:
                case.rows_landed, case.job_restarts = item.corner.count(), item.job.restarts()
                case.dead_lettered = len(item.corner.dead_letters(expected=0, timeout=5))
        finally:
            item.close()  # the job is stopped even when taking the figures fails (a stream job was left running once)


def pytest_terminal_summary(terminalreporter):
    if TABLE.rows:
        terminalreporter.write_sep("=", "fault table")
        terminalreporter.write(TABLE.markdown())
