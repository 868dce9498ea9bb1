"""Run every benchmark, then print each figure as a ratio against its baseline (and the target it is held to).

Usage:
    python -m bench                      # or: make bench (starts the embedded stack first)
    python -m bench --quick              # the load bench with 15 s steps
    python -m bench --only size,load     # some of: producer, sink, size, load

Benches (each also runs alone, see its module docstring):
  producer  bench/producer_bench.py  our publish stage vs a raw fastavro + produce loop
  sink      bench/sink_bench.py      the job's decode + write vs the Cassandra connector alone
  size      bench/size.py            bytes per user on the broker's disk per compression vs the seed's JSON
  load      bench/load.py            the real job under stepped load: freshness, landed rows/s, lag
Each writes its JSON under bench/results/; this summary is printed last.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bench import sink_bench  # constants only: it imports Spark when it runs

BENCHES = ("producer", "sink", "size", "load")
# The targets (issue 10): what each ratio should reach after the optimization work.
TARGETS = {
    "producer / raw fastavro loop": ">= 0.5",
    "sink decode+write / connector": ">= 0.8",
    "bytes per user, best codec / seed JSON": "<= 0.2",
    "sustained users/s / 3,000": ">= 1.0",
    "p95 freshness at 1,000 users/s / 3 s": "<= 1.0",
}


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(figure, value, baseline, ratio) for every bench that ran."""
    rows = []
    if "producer" in results:
        r = results["producer"]
        rows.append(("producer / raw fastavro loop", f"{r['pipeline_users_per_s']:,} users/s",
                     f"{r['raw_users_per_s']:,} users/s", f"{r['ratio_pipeline_to_raw']:.2f}"))
    if "sink" in results:
        r, ratios = results["sink"]["rows_per_second"], results["sink"]["ratios"]
        tuned = ratios[sink_bench.TUNED_RATIO]["median"]
        rows.append(("sink decode+write / connector", f"{r['pipeline']:,.0f} rows/s", f"{r['ceiling']:,.0f} rows/s",
                     f"{ratios[sink_bench.TARGET_RATIO]['median']:.2f}"))
        rows.append(("sink decode+write / connector, job's write options", f"{r['pipeline']:,.0f} rows/s",
                     f"{r['ceiling_tuned']:,.0f} rows/s", f"{tuned:.2f}"))
    if "size" in results:
        r = results["size"]
        codecs = {k: v for k, v in r["bytes_per_user"].items() if k.startswith("avro-")}  # every codec and linger
        best = min(codecs, key=codecs.get)
        seed = r["bytes_per_user"]["seed json"]
        rows.append(("bytes per user, best codec / seed JSON", f"{codecs[best]:,.0f} B ({best})", f"{seed:,.0f} B",
                     f"{r['ratio_to_seed_json'][best]:.2f}"))
        if "avro-lz4" in codecs:
            rows.append(("bytes per user, lz4 (today) / seed JSON", f"{codecs['avro-lz4']:,.0f} B", f"{seed:,.0f} B",
                         f"{r['ratio_to_seed_json']['avro-lz4']:.2f}"))
    if "load" in results:
        r = results["load"]
        best = r["highest_sustained_users_per_s"] or 0
        rows.append(("sustained users/s / 3,000", f"{best:,} users/s", "3,000 users/s", f"{best / 3000:.2f}"))
        at_1000 = next((s for s in r["steps"] if s["offered_users_per_s"] == 1000), None)
        if at_1000:
            p95 = at_1000["freshness_seconds"]["p95"]
            rows.append(("p95 freshness at 1,000 users/s / 3 s", _seconds_or_unlanded(p95),
                         "3 s", "-" if p95 is None else f"{p95 / 3:.2f}"))
        warmup = r.get("warmup")
        if warmup:  # shown, not judged: the first seconds after the JVMs start
            p95 = warmup["freshness_seconds"]["p95"]
            rows.append((f"p95 freshness in the warm-up ({warmup['offered_users_per_s']:,} users/s, cold JVMs)",
                         _seconds_or_unlanded(p95), "-", "-"))
    return rows


def _seconds_or_unlanded(p95: float | None) -> str:
    """A freshness percentile; None means rows that never landed, which no percentile can hide."""
    return "not all landed" if p95 is None else f"{p95:.2f} s"


def render_summary(results: dict[str, dict[str, Any]]) -> str:
    rows = summary_rows(results)
    width = max(len(r[0]) for r in rows)
    lines = ["", "summary (each figure against its baseline, measured in this run)",
             f"  {'figure':<{width}}  {'value':>34}  {'baseline':>16}  {'ratio':>6}  target"]
    lines += [f"  {name:<{width}}  {value:>34}  {base:>16}  {ratio:>6}  {TARGETS.get(name, '')}"
              for name, value, base, ratio in rows]
    return "\n".join(lines)


def runners(quick: bool) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each bench's run(argv), imported only when it runs (the sink bench needs Spark)."""
    def producer() -> dict[str, Any]:
        from bench import producer_bench
        return producer_bench.run([])

    def sink() -> dict[str, Any]:
        from bench import sink_bench
        return sink_bench.run([])

    def size() -> dict[str, Any]:
        from bench import size
        return size.run([])

    def load() -> dict[str, Any]:
        from bench import load
        return load.run(["--quick"] if quick else [])

    return {"producer": producer, "sink": sink, "size": size, "load": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="load bench with 15 s steps")
    parser.add_argument("--only", type=lambda t: t.split(","), default=list(BENCHES),
                        help="comma list of benches to run (default producer,sink,size,load)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        parser.error(f"unknown bench {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    results = {}
    for name, run in runners(args.quick).items():
        if name in args.only:
            print(f"\n== {name} bench ==", flush=True)
            results[name] = run()
    print(render_summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
