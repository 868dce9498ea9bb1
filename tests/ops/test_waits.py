"""The demo's one waiting policy (ops/waits.py, used through ops.demo.wait): polls wait, only deadlines fail."""

from __future__ import annotations

import re
import time

import pytest

from ops.demo import DemoError, wait
from ops.waits import Deadline, NotYet, SlowNotice


class Slow(Exception):
    """Stands for a timeout or a refused connection."""


def test_not_yet_is_polled_until_done():
    answers = iter([NotYet("1/3"), NotYet("2/3"), 3])

    def check() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait(check, "three rows", "stream", "see stream.log", Deadline(30)) == 3


def test_the_deadline_fails_naming_component_last_answer_and_what_to_do():
    began = time.monotonic()
    with pytest.raises(DemoError) as failed:
        wait(lambda: (_ for _ in ()).throw(NotYet("742/1000 rows")), "every row", "stream", "see .stack/logs/stream.log", Deadline(3))
    assert str(failed.value) == "stream: gave up waiting for every row after 3s (last: 742/1000 rows); see .stack/logs/stream.log"
    assert 3 <= time.monotonic() - began < 6


def test_transient_failures_are_retried_and_announced_once_per_stretch():
    lines: list[str] = []
    answers = iter([Slow("timed out"), Slow("timed out"), NotYet("0/1"), Slow("refused"), 1])

    def check() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    notice = SlowNotice("Cassandra", say=lines.append)
    assert wait(check, "a row", "stream", "see it", Deadline(60), lambda e: isinstance(e, Slow), notice) == 1
    assert [re.sub(r"\d+s$", "Ns", line.split(" (")[0].strip()) for line in lines] == [
        "Cassandra slow to answer, retrying…", "Cassandra answered again after Ns",  # one stretch: two failures, one line
        "Cassandra slow to answer, retrying…", "Cassandra answered again after Ns",
    ]
    assert lines[0].endswith("(timed out)") and lines[2].endswith("(refused)")


def test_anything_else_is_final_at_once():
    calls = []

    def check():
        calls.append(1)
        raise DemoError("airflow: run failed")

    with pytest.raises(DemoError, match="run failed"):
        wait(check, "the run", "airflow", "see it", Deadline(60), lambda e: isinstance(e, Slow))
    assert len(calls) == 1
