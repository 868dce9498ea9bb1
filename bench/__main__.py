"""Run every benchmark: the producer bench, then the sink bench when it is importable.

Usage:
    python -m bench          # or: make bench (starts the embedded stack first)
"""

from __future__ import annotations

import importlib.util
import sys

from bench import producer_bench


def main() -> int:
    status = producer_bench.main([])
    # The sink bench is written separately (and needs Spark); run it when it is there.
    if importlib.util.find_spec("bench.sink_bench") is not None:
        from bench import sink_bench

        status = sink_bench.main([]) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
