"""bench.sink_steps' summary: each step's median against the connector's own write of cached rows."""

from __future__ import annotations

from bench.sink_steps import STEPS, render, summary


def test_each_step_is_a_ratio_of_the_cached_rows_write_with_its_median_cpu():
    seconds = {STEPS[0]: [1.0, 2.0, 1.2], STEPS[1]: [1.5, 1.6, 9.0], STEPS[4]: [2.4, 2.5, 2.6]}
    cpu = {STEPS[0]: [(1.0, 1.1), (3.0, 3.0), (1.4, 1.3)], STEPS[1]: [(1.5, 1.4), (1.6, 1.5), (1.7, 1.6)],
           STEPS[4]: [(2.0, 2.2), (2.1, 2.3), (2.2, 2.4)]}
    result = summary(20_000, 3, 3, seconds, cpu)
    steps = {step["step"]: step for step in result["steps"]}
    assert [(name, steps[name]["seconds"], steps[name]["vs_connector"]) for name in seconds] == [
        (STEPS[0], 1.2, 1.0), (STEPS[1], 1.6, 0.75), (STEPS[4], 2.5, 0.48)]
    assert steps[STEPS[4]]["rows_per_second"] == 8000.0
    assert (steps[STEPS[0]]["cassandra_cpu_seconds"], steps[STEPS[0]]["spark_cpu_seconds"]) == (1.4, 1.3)
    assert "+ key check (the job's write)" in render(result) and "0.48" in render(result)
