"""The pipeline at a glance, without Docker: services, topics, lag, the job's state, dead letters, schemas, rows, DAG runs.

Usage:
    python -m ops.status                 # one report (`make status`)
    python -m ops.status --json          # the same data as JSON
    python -m ops.status --watch 5       # refresh every 5 seconds until Ctrl-C
    python -m ops.status --check         # exit 1 when a core service is down
    python -m ops.status --services      # the services table alone (`python -m stack status`)

Every section asks a public protocol (Kafka, the Confluent Schema Registry REST
API, CQL, HTTP), so the view works on the embedded stack and on
docker-compose.yml alike. A service that is down is shown as "down" with the
reason instead of stopping the report. `--check` turns the core services
(Kafka, the registry, Cassandra, the data source) into an exit code for scripts.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from rich.console import Console

from core.settings import Settings, load_settings
from ops.status.render import report_sections, services_section, text
from ops.status.report import collect, collect_services, to_json


def _console() -> Console:
    """The terminal's width when there is one; wide enough for paths when piped (rich would wrap at 80)."""
    return Console(soft_wrap=False) if sys.stdout.isatty() else Console(width=240, color_system=None, soft_wrap=False)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """The command line: the driver's per-host warnings are quiet (the report says the host is down); Ctrl-C ends --watch."""
    args = parse_args(argv)
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    try:
        return show(args, settings or load_settings())
    except KeyboardInterrupt:
        return 0


def show(args: argparse.Namespace, settings: Settings) -> int:
    """One report (or one per `--watch` interval); 1 with `--check` when a core service is down."""
    console = _console()
    while True:
        if args.services:
            services = collect_services(settings, timeout=args.timeout)
            down = [s.name for s in services if s.core and not s.up]
            output = services_section(services)
        else:
            report = collect(settings, timeout=args.timeout, scan_seconds=args.scan_seconds)
            down = report.core_down()
            output = to_json(report) if args.json else report_sections(report)
        if args.watch and sys.stdout.isatty():
            console.clear()
        if isinstance(output, str):
            sys.stdout.write(output + "\n")
        else:
            sys.stdout.write(text(output, width=console.width))
        sys.stdout.flush()
        if not args.watch:
            break
        time.sleep(args.watch)
    if args.check and down:
        print(f"status: core service(s) down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.status", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--watch", type=float, metavar="N", help="refresh every N seconds until Ctrl-C")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a core service (Kafka, registry, Cassandra, data source) is down")
    parser.add_argument("--services", action="store_true", help="only the services table: state, pid, memory, log")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds each probe may wait (default 3)")
    parser.add_argument("--scan-seconds", type=float, default=10.0,
                        help="longest time spent counting dead letters (default 10)")
    args = parser.parse_args(argv)
    if args.watch is not None and args.watch <= 0:
        parser.error("--watch needs a positive number of seconds")
    if args.json and args.services:
        parser.error("--services prints a table; leave out --json (the full report's JSON has the services)")
    return args


if __name__ == "__main__":
    sys.exit(main())
