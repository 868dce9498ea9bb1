"""A stand-in for `python -m spark.stream_job` that the supervisor tests can script: no Spark, seconds not minutes.

    python tests/stack/fake_job.py CHECKPOINT PLAN

PLAN is a comma list with one step per run (the run number is kept in
CHECKPOINT/../runs); the last step repeats:
    run          write `running`, log the launcher's "started: topic" line, then run until signalled
    crash        write `running`, then exit 1 without a state record (a lost JVM, say)
    fail-batch   write `running`, then `failed` in batch 7 at offsets {"t": {"0": 40}} and exit 1
    fail-batch-N the same for batch N
    fail-start   exit 1 before writing any state (a service down at start)
    selfkill     write `running`, then SIGKILL itself (an OOM kill)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.job_state import FAILED, RUNNING, job_state_path, write_job_state  # noqa: E402


def main(checkpoint: str, plan: str) -> int:
    steps = plan.split(",")
    counter = Path(checkpoint).parent / "runs"
    run = int(counter.read_text()) if counter.exists() else 0
    counter.parent.mkdir(parents=True, exist_ok=True)
    counter.write_text(str(run + 1))
    step = steps[min(run, len(steps) - 1)]
    state = job_state_path(checkpoint)
    print(f"fake job run {run}: {step}", flush=True)
    if step == "fail-start":
        print("spark.stream_job: cannot reach the Schema Registry (fake)", file=sys.stderr, flush=True)
        return 1
    write_job_state(state, RUNNING)
    print("query fake started: topic t -> ks.users", flush=True)
    if step == "crash":
        time.sleep(0.5)
        return 1
    if step.startswith("fail-batch"):
        batch = int(step.rsplit("-", 1)[1]) if step.count("-") == 2 else 7
        write_job_state(state, FAILED, error={"class": "SparkUpgradeException", "message": "fake failure",
                                              "batch_id": batch, "offsets": {"t": {"0": 40}}})
        return 1
    if step == "selfkill":
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    while True:
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
