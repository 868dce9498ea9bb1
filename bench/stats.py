"""Small statistics for the benches: percentiles with not-yet-landed rows, landing rate, lag trend, CPU share, paired ratios."""

from __future__ import annotations

import math
import statistics
from typing import Any


def percentile(sorted_values: list[float], missing: int, p: float) -> float | None:
    """Nearest-rank percentile where `missing` rows count as infinitely late; None if the rank falls on one."""
    n = len(sorted_values) + missing
    if n == 0:
        return None
    rank = max(1, math.ceil(p / 100 * n))
    return round(sorted_values[rank - 1], 3) if rank <= len(sorted_values) else None


def landing_rate(write_times: list[float]) -> float | None:
    """Rows/s between the 10th and 90th percentile write times: the steady rate, without ramp-up and tail."""
    if len(write_times) < 20:
        return None
    times = sorted(write_times)
    lo, hi = times[len(times) // 10], times[len(times) * 9 // 10]
    return round((len(times) * 8 // 10) / (hi - lo), 1) if hi > lo else None


def lag_growth(samples: list[dict[str, Any]]) -> float:
    """Least-squares slope of lag over time (records/s): about 0 when the job keeps up, the deficit when not.

    Lag is a saw-tooth (it grows until the next batch is written), so the
    slope is taken over the lows just after each batch when there are at
    least three; over every sample otherwise.
    """
    lows = [s for s in samples if s.get("after_batch")]
    points = [(s["t"], s["lag"]) for s in (lows if len(lows) >= 3 else samples)]
    if len(points) < 3 or len({lag for _, lag in points}) < 2:
        return 0.0
    return round(statistics.linear_regression([t for t, _ in points], [lag for _, lag in points]).slope, 1)


def resources(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per process group: cores busy on average (CPU seconds / wall seconds) and the largest resident memory."""
    if len(samples) < 2:
        return {}
    wall = samples[-1]["t"] - samples[0]["t"]
    groups: dict[str, dict[str, float]] = {}
    for sample in samples[1:]:  # the first sample's CPU covers time before the window
        for name, use in sample["resources"].items():
            group = groups.setdefault(name, {"cpu_seconds": 0.0, "rss_mb_max": 0.0})
            group["cpu_seconds"] += use["cpu_seconds"]
            group["rss_mb_max"] = max(group["rss_mb_max"], use["rss_mb"])
    result = {name: {"cores": round(g["cpu_seconds"] / wall, 2), "rss_mb_max": round(g["rss_mb_max"])}
              for name, g in groups.items()}
    result["load average (1 min)"] = {"mean": round(statistics.mean(s["load_average_1m"] for s in samples), 1)}
    return result


def paired_ratio(measured: list[float], baseline: list[float]) -> dict[str, float]:
    """baseline / measured seconds, round by round: the median, lowest and highest of the per-round ratios.

    Why paired: each round of bench.sink_bench.interleaved runs every write
    back to back (and each of bench.producer_bench's rounds both loops), and
    on the shared 2-core machine the whole round drifts
    (Cassandra's flushes and JIT, other processes): the same connector write
    took 7,600 rows/s in one run and 14,600 in another. A ratio within a
    round cancels most of that; a ratio of two medians of five can pair a
    fast round with a slow one.
    """
    if not measured or len(measured) != len(baseline):
        raise ValueError(f"paired ratio needs as many baseline runs as measured ones: {len(baseline)} vs {len(measured)}")
    ratios = [base / seconds for seconds, base in zip(measured, baseline)]
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}
