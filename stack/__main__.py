"""The embedded stack's command line: every service a local process on loopback.

Usage:
    python -m stack fetch                   # jars through Maven (make setup)
    python -m stack up [SERVICE ...]        # default: kafka registry cassandra datasource monitor (make up)
    python -m stack up --all                # also Airflow and the Spark streaming job
    python -m stack down [SERVICE ...]      # default: everything (make down)
    python -m stack status                  # per service: up/down, version, pid, memory, log (ops.status --services)
    python -m stack clean                   # wipe data and logs (services must be down)
    python -m stack test [PYTEST ARGS ...]  # up, pytest, stop what it started (make test)
    python -m stack run-with-stack -- CMD   # the same around any command (make bench)

Services: kafka, registry, cassandra, datasource, airflow, stream, monitor (the web monitor).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from core.settings import secure_env_file
from stack import fetch, launcher
from stack.layout import Layout
from stack.services import CORE, SERVICES, StackError
from stack.settings import load_stack_settings

PYTEST_NO_TESTS = 5


def cmd_fetch(settings, layout: Layout, args) -> int:
    layout.make_dirs()
    fetch.fetch_all(layout)
    return 0


def cmd_up(settings, layout: Layout, args) -> int:
    names = list(SERVICES) if args.all else (args.services or [*CORE, "monitor"])
    started_at = time.monotonic()
    launcher.up(settings, layout, names)
    if settings.stack_security:
        print(f"up: secured; client settings (passwords included) in {secure_env_file(settings)}, 0600: commands run "
              "with STACK_SECURITY=on read it, or `set -a; . <that file>; set +a`")
    print(f"up: all ready in {time.monotonic() - started_at:.0f}s. `make status` or the monitor at {settings.monitor_url} shows the pipeline; `make down` stops it.")
    return 0


def cmd_down(settings, layout: Layout, args) -> int:
    launcher.down(settings, layout, args.services or None)
    return 0


def cmd_status(settings, layout: Layout, args) -> int:
    """The status view's services table (`python -m ops.status --services`): state, version, pid, memory, log."""
    from ops.status.__main__ import main

    return main(["--services"])


def cmd_clean(settings, layout: Layout, args) -> int:
    running = [row.name for row in launcher.status(settings, layout) if row.pid is not None]
    if running:
        raise StackError(f"clean: {', '.join(running)} still running; run `make down` first")
    for folder in (layout.home / "data", layout.logs, layout.run, layout.conf, layout.home / "airflow"):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"clean: wiped data, logs and Airflow state under {layout.home} (jars kept)")
    return 0


def running(settings, layout: Layout) -> set[str]:
    return {row.name for row in launcher.status(settings, layout) if row.pid is not None}


def run_with_stack(settings, layout: Layout, command: list[str], names: list[str]) -> int:
    """Start what is not running, run `command`, then stop what was not running before, also on failure.

    "What was not running before" includes what `command` itself started
    (the demo's tests start the stream job, Airflow and the monitor): a test
    run leaves the machine as it found it.
    """
    before = running(settings, layout)
    started: list[str] = []
    try:
        started = launcher.up(settings, layout, names)
        print(f"stack: running {' '.join(command)}", flush=True)
        return subprocess.call(command)
    finally:
        ours = [name for name in SERVICES if name in (set(started) | running(settings, layout)) - before]
        if ours:
            print(f"stack: stopping what this run started: {', '.join(ours)}", flush=True)
            launcher.down(settings, layout, ours)


def cmd_test(settings, layout: Layout, args) -> int:
    code = run_with_stack(settings, layout, [sys.executable, "-m", "pytest", *args.pytest_args], list(CORE))
    if code == PYTEST_NO_TESTS:
        print("test: pytest collected no tests; that is a failure, not a pass", file=sys.stderr)
        return 1
    return code


def cmd_run_with_stack(settings, layout: Layout, args) -> int:
    command = [part for part in args.command if part != "--"]
    if not command:
        raise StackError("run-with-stack: give a command after --")
    return run_with_stack(settings, layout, command, list(CORE))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="resolve the stack's jars through Maven").set_defaults(run=cmd_fetch)
    up = commands.add_parser("up", help="start services and wait until ready")
    up.add_argument("services", nargs="*", help=f"any of: {', '.join(SERVICES)}")
    up.add_argument("--all", action="store_true", help="every service, Airflow and the streaming job included")
    up.set_defaults(run=cmd_up)
    down = commands.add_parser("down", help="stop services (default: all)")
    down.add_argument("services", nargs="*")
    down.set_defaults(run=cmd_down)
    commands.add_parser("status", help="per-service state").set_defaults(run=cmd_status)
    commands.add_parser("clean", help="wipe data and logs").set_defaults(run=cmd_clean)
    test = commands.add_parser("test", help="run pytest against a started stack")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(run=cmd_test)
    wrap = commands.add_parser("run-with-stack", help="run a command against a started stack")
    wrap.add_argument("command", nargs=argparse.REMAINDER)
    wrap.set_defaults(run=cmd_run_with_stack)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; for `test`, everything after it goes to pytest as given.

    argparse's REMAINDER refuses a first argument that starts with a dash, so
    `make test PYTEST_ARGS="-x --durations=20"` would fail without this.
    """
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    if args.command == "test":
        args.pytest_args = argv[argv.index("test") + 1:]
    elif passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_stack_settings()
    layout = Layout(settings.stack_home)
    try:
        return args.run(settings, layout, args)
    except (StackError, fetch.FetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
