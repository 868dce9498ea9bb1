"""The load bench's picture: freshness percentiles and landed throughput against offered load (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to a file
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator, StrMethodFormatter  # noqa: E402


def plot_load(result: dict[str, Any], path: Path) -> Path:
    """Two panels sharing the offered-rate axis; a step with unlanded rows shows no point for that percentile."""
    steps = result["steps"]
    offered = [s["offered_users_per_s"] for s in steps]
    fig, (fresh, rate) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, marker in (("p50", "o"), ("p95", "s"), ("p99", "^")):
        values = [s["freshness_seconds"][name] for s in steps]
        fresh.plot(offered, [float("nan") if v is None else v for v in values], marker=marker, label=name)
    warmup = result.get("warmup")
    if warmup and warmup["freshness_seconds"]["p95"] is not None:
        fresh.plot([warmup["offered_users_per_s"]], [warmup["freshness_seconds"]["p95"]], marker="x", linestyle="none",
                   color="black", label="p95 in the warm-up (cold JVMs)")
    fresh.axhline(result["settings"]["freshness_p95_limit"], color="grey", linestyle="--", label="p95 limit")
    fresh.set(xscale="log", yscale="log", xlabel="offered users/s", ylabel="freshness (s): WRITETIME - Kafka timestamp",
              title="Freshness per step")
    fresh.legend()
    rate.plot(offered, offered, color="grey", linestyle="--", label="offered")
    rate.plot(offered, [s["published_users_per_s"] for s in steps], marker="o", label="published")
    rate.plot(offered, [s["landed_rows_per_s"] or float("nan") for s in steps], marker="s", label="landed in Cassandra")
    rate.set(xscale="log", yscale="log", xlabel="offered users/s", ylabel="users/s", title="Throughput per step")
    rate.legend()
    for axis in (fresh, rate):
        axis.set_xticks(offered, [f"{o:,}" for o in offered])
        axis.xaxis.set_minor_locator(NullLocator())
        # Plain numbers on the log axes (2 and 3, not 2×10⁰ and 3×10⁰).
        axis.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if axis is rate else "{x:g}"))
        axis.yaxis.set_minor_formatter(StrMethodFormatter("{x:,.0f}" if axis is rate else "{x:g}"))
    best = result["highest_sustained_users_per_s"]
    fig.suptitle(f"userstream load bench ({result['settings']['duration_seconds']:.0f} s steps, trigger "
                 f"{result['settings']['trigger']}): " + (f"highest sustained {best:,} users/s" if best else "no step sustained"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
