"""A Spark that will not stop does not keep the job from exiting (and so from being restarted).

SparkContext.stop() joins the listener bus's threads without a timeout. In
a CI run the bus stalled: the job printed its error, then hung in stop(),
and its supervisor, which restarts a job only once it exits, waited with
it. Here a real listener never returns (a StreamingQueryListener that
sleeps on a progress event, so the bus's `streams` queue is stuck for
real), and stop_spark must give up after its timeout, kill the JVM it
started, and let the process exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psutil
import pytest

from core.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.spark]

STUCK_STOP = textwrap.dedent("""
    import os, sys, time
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQueryListener
    from spark.session import stop_spark

    class Stuck(StreamingQueryListener):
        def onQueryStarted(self, event): pass  # called in start() itself, not on the bus
        def onQueryProgress(self, event):
            time.sleep(3600)  # the listener bus's thread waits in here
        def onQueryIdle(self, event): pass
        def onQueryTerminated(self, event): pass

    spark = SparkSession.builder.master("local[1]").appName("stuck-stop").getOrCreate()
    spark.streams.addListener(Stuck())
    query = spark.readStream.format("rate").load().writeStream.format("noop").trigger(processingTime="1 second").start()
    time.sleep(6)  # a batch's progress event is on the bus by now
    print("jvm", spark.sparkContext._gateway.proc.pid, flush=True)
    print("stopped", stop_spark(spark, timeout=float(sys.argv[1])), flush=True)
    os._exit(0)  # as the job does: a thread is still inside a call to the killed JVM
""")


def test_a_stop_that_hangs_kills_the_jvm_and_the_process_exits():
    result = subprocess.run([sys.executable, "-c", STUCK_STOP, "10"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("jvm ", "stopped ")))
    assert lines.get("stopped") == "False", (result.stdout, result.stderr[-3000:])
    assert "Spark did not stop within 10 s" in result.stderr and "killing its JVM (pid " in result.stderr, result.stderr[-3000:]
    jvm = int(lines["jvm"])
    assert not psutil.pid_exists(jvm) or psutil.Process(jvm).status() == psutil.STATUS_ZOMBIE, f"the JVM {jvm} still runs"
