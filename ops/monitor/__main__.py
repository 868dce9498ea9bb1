"""Serve the web monitor (FastAPI under uvicorn) at MONITOR_URL.

Usage:
    python -m ops.monitor                       # http://127.0.0.1:8050 by default
    python -m ops.monitor --host 0.0.0.0 --port 8050   # in a container
    make up                                     # the launcher starts it as the service "monitor"
"""

from __future__ import annotations

import argparse
import logging
import sys
from urllib.parse import urlparse

import uvicorn

from core.settings import Settings, load_settings
from ops.monitor.app import create_app


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """Serve until stopped (SIGTERM from the launcher's `down`, or Ctrl-C)."""
    args = parse_args(argv)
    settings = settings or load_settings()
    url = urlparse(settings.monitor_url)
    host = args.host or url.hostname or "127.0.0.1"
    port = args.port or url.port or 8050
    logging.getLogger("cassandra").setLevel(logging.ERROR)  # a down node is shown on the page, per probe
    print(f"monitor: serving http://{host}:{port}/ (JSON under /api, Prometheus at /metrics)", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.monitor", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="interface to bind (default: MONITOR_URL's host)")
    parser.add_argument("--port", type=int, help="port to bind (default: MONITOR_URL's port)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
