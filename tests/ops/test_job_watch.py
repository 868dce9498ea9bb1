"""The demo's view of the streaming job: one line saying why it stopped, from its state file or its log.

Pure file reading (a temporary stack home and checkpoint), so these need no service.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import pytest

from core.job_state import FAILED, RUNNING, WAITING, job_state_path, write_job_state
from core.settings import Settings
from ops.job_watch import RepeatedFailures, job_report, last_exception
from stack.layout import Layout
from stack.services import START_MARKER

FAILURE = {"class": "SparkUpgradeException", "message": "writing dates before 1900-01-01 is ambiguous",
           "batch_id": 7, "offsets": {"users": {"0": 120}}, "hint": "set spark.sql.avro.datetimeRebaseModeInWrite"}
JAVA_TRACE = """\
26/01/01 10:00:01 ERROR MicroBatchExecution: Query users terminated with error
org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times
\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2856)
\tat org.apache.spark.sql.execution.streaming.MicroBatchExecution.runBatch(MicroBatchExecution.scala:800)
Caused by: java.io.IOException: Failed to write statements to userstream.users
\tat com.datastax.spark.connector.writer.TableWriter.writeInternal(TableWriter.scala:250)
Caused by: com.datastax.oss.driver.api.core.servererrors.InvalidQueryException: Invalid null value in condition for column id
\tat com.datastax.oss.driver.api.core.servererrors.InvalidQueryException.copy(InvalidQueryException.java:48)
\t... 25 more
"""


@pytest.fixture
def stack(tmp_path):
    """A stack home with a stream log and a checkpoint of its own."""
    settings = Settings(stack_home=tmp_path, spark_checkpoint_dir=str(tmp_path / "data" / "spark-checkpoints" / "users"))
    layout = Layout(tmp_path)
    layout.make_dirs()
    return settings, layout


def start_marker(layout: Layout, when: datetime | None = None, then: str = "") -> None:
    """What the launcher (or the supervisor) writes into the log when it starts the job."""
    stamp = (when or datetime.now()).strftime("%Y-%m-%d %H:%M:%S")
    with layout.log("stream").open("a") as log:
        log.write(f"\n{START_MARKER}{stamp} starting: python -m spark.stream_job\n{then}")


def state(settings: Settings, kind: str, **fields) -> None:
    write_job_state(job_state_path(settings.spark_checkpoint_dir), kind, **fields)


def test_a_failed_job_that_is_gone_is_reported_with_its_own_reason(stack):
    settings, layout = stack
    start_marker(layout, then=JAVA_TRACE)
    state(settings, FAILED, error=FAILURE)
    report = job_report(settings, layout, pid=None)
    assert report.stopped
    assert report.line == ('stopped in batch 7 at offsets {"users": {"0": 120}} with SparkUpgradeException: '
                           "writing dates before 1900-01-01 is ambiguous. set spark.sql.avro.datetimeRebaseModeInWrite")


def test_a_state_from_before_the_latest_start_is_ignored_and_the_log_speaks(stack):
    """Leftovers do not decide: an old `failed` must not be blamed for this start's death."""
    settings, layout = stack
    state(settings, FAILED, error=FAILURE)
    start_marker(layout, datetime.now() + timedelta(seconds=3), then=JAVA_TRACE)
    report = job_report(settings, layout, pid=None)
    assert report.stopped
    assert "SparkUpgradeException" not in report.line
    assert report.line.startswith("the job is not running: com.datastax.oss.driver.api.core.servererrors."
                                  "InvalidQueryException: Invalid null value in condition for column id."), report.line
    assert "make stream" in report.line and str(layout.log("stream")) in report.line


def test_the_jobs_own_one_line_reason_wins_over_a_stack_trace(stack):
    settings, layout = stack
    start_marker(layout, then=JAVA_TRACE + "spark.stream_job: cannot reach Cassandra at 127.0.0.1:9042; is it running?\n")
    assert last_exception(layout.log("stream")) == "cannot reach Cassandra at 127.0.0.1:9042; is it running?"


def test_a_python_traceback_gives_its_last_line(stack):
    settings, layout = stack
    start_marker(layout, then='Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
                              "    raise ValueError('bad offsets')\nValueError: bad offsets\n")
    assert last_exception(layout.log("stream")) == "ValueError: bad offsets"


def test_only_the_latest_start_is_read(stack):
    settings, layout = stack
    start_marker(layout, then=JAVA_TRACE)
    start_marker(layout, then="INFO query users started: topic users -> userstream.users\n")
    assert last_exception(layout.log("stream")) is None
    report = job_report(settings, layout, pid=None)
    assert report.stopped and "logged no error (was it stopped or killed?)" in report.line


def test_a_waiting_job_is_shown_and_not_stopped(stack):
    settings, layout = stack
    start_marker(layout)
    state(settings, WAITING, service="cassandra", detail="NoHostAvailable: 127.0.0.1:9042 refused")
    report = job_report(settings, layout, pid=os.getpid())
    assert report.state == WAITING and not report.stopped
    assert report.line.startswith("waiting for cassandra since ") and report.line.endswith("NoHostAvailable: 127.0.0.1:9042 refused")


def test_a_failed_job_its_supervisor_restarts_is_waited_for(stack):
    settings, layout = stack
    start_marker(layout)
    state(settings, FAILED, error=FAILURE)
    report = job_report(settings, layout, pid=os.getpid())
    assert report.state == FAILED and not report.stopped
    assert report.line.endswith("(waiting for the job to be restarted)")


@pytest.mark.parametrize("final", [{"final": True}, {"hint": "crash loop: batch 7 failed 3 times in a row"}])
def test_a_crash_loop_is_final_even_while_the_supervisor_runs(stack, final):
    settings, layout = stack
    start_marker(layout)
    state(settings, FAILED, error={**FAILURE, **final})
    report = job_report(settings, layout, pid=os.getpid())
    assert report.stopped and "SparkUpgradeException" in report.line


def test_a_running_job_is_running(stack):
    settings, layout = stack
    start_marker(layout)
    state(settings, RUNNING)
    assert job_report(settings, layout, pid=os.getpid()).state == RUNNING
    job_state_path(settings.spark_checkpoint_dir).unlink()  # a job that writes no state file: running while alive
    assert job_report(settings, layout, pid=os.getpid()).state == RUNNING


def test_the_same_error_after_a_restart_is_a_crash_loop_for_the_demo(stack):
    """A failure outside a batch has no batch id, so the supervisor would restart it until the demo's deadline."""
    settings, layout = stack
    offsets_changed = {"class": "IllegalStateException", "message": "Partition users-2's offset was changed from 10 to 2",
                       "offsets": {"users": {"2": 10}}}
    repeated = RepeatedFailures()
    start_marker(layout)
    state(settings, FAILED, error=offsets_changed)
    first = job_report(settings, layout, pid=os.getpid())
    assert first.state == FAILED and not repeated.crash_loop(first)
    assert not repeated.crash_loop(job_report(settings, layout, pid=os.getpid()))  # the same record, polled again
    start_marker(layout, datetime.now() + timedelta(seconds=2))  # the supervisor restarts the job
    assert job_report(settings, layout, pid=os.getpid()).state == RUNNING
    time.sleep(2.5)
    state(settings, RUNNING)
    assert not repeated.crash_loop(job_report(settings, layout, pid=os.getpid()))
    state(settings, FAILED, error={**offsets_changed, "message": "Partition users-0's offset was changed from 11 to 0"})
    assert repeated.crash_loop(job_report(settings, layout, pid=os.getpid()))


def test_a_different_error_after_a_restart_is_not_a_crash_loop(stack):
    settings, layout = stack
    repeated = RepeatedFailures()
    start_marker(layout)
    state(settings, FAILED, error={"class": "IOException", "message": "disk full"})
    assert not repeated.crash_loop(job_report(settings, layout, pid=os.getpid()))
    time.sleep(1.1)
    state(settings, FAILED, error=FAILURE)
    assert not repeated.crash_loop(job_report(settings, layout, pid=os.getpid()))
