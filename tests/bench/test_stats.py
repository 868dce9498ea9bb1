"""The benches' arithmetic: percentiles with unlanded rows, the landing rate, the lag trend, CPU shares, paired ratios."""

from __future__ import annotations

import pytest

from bench import stats


def test_percentile_counts_unlanded_rows_as_infinitely_late():
    values = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(values, 0, 50) == 2.0
    assert stats.percentile(values, 0, 100) == 4.0
    assert stats.percentile(values, 1, 80) == 4.0  # rank 4 of 5
    assert stats.percentile(values, 1, 95) is None  # rank 5 of 5 has not landed
    assert stats.percentile([], 0, 50) is None


def test_landing_rate_is_the_steady_rate_between_the_10th_and_90th_percentile():
    write_times = [100 + i / 50 for i in range(1000)]  # 50 rows/s, evenly
    assert stats.landing_rate(write_times) == pytest.approx(50, rel=0.01)
    assert stats.landing_rate([1.0] * 5) is None


def sawtooth(troughs: list[int], rise: int) -> list[dict]:
    """Lag sampled every second: a batch every 5 s brings it down to the trough, then it rises by `rise`/s."""
    samples = []
    for i, low in enumerate(troughs):
        for k in range(5):
            samples.append({"t": i * 5 + k, "lag": low + k * rise, "after_batch": k == 0})
    return samples


def test_lag_growth_ignores_the_sawtooth_of_a_job_that_keeps_up():
    assert stats.lag_growth(sawtooth([100] * 12, rise=500)) == 0.0


def test_lag_growth_is_the_deficit_of_a_job_that_falls_behind():
    assert stats.lag_growth(sawtooth([100 + 250 * i for i in range(12)], rise=500)) == pytest.approx(50.0)


def test_resources_are_cores_busy_and_peak_memory():
    samples = [{"t": t, "load_average_1m": 2.0,
                "resources": {"stream job": {"cpu_seconds": 1.5, "rss_mb": 100 + t}}} for t in range(5)]
    used = stats.resources(samples)
    assert used["stream job"] == {"cores": 1.5, "rss_mb_max": 104}
    assert used["load average (1 min)"] == {"mean": 2.0}


def test_paired_ratio_is_taken_round_by_round():
    # Round 2 is slow for both writes: paired, it still gives 0.5; the ratio of the medians would give 0.4.
    measured, baseline = [2.0, 10.0, 2.5], [1.0, 5.0, 1.0]
    assert stats.paired_ratio(measured, baseline) == {"median": 0.5, "min": 0.4, "max": 0.5}


def test_paired_ratio_refuses_unpaired_runs():
    with pytest.raises(ValueError, match="as many baseline runs"):
        stats.paired_ratio([1.0, 2.0], [1.0])
