"""Loopback ports for tests of "service down" and of the local data source's own CLI."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port nothing listens on: bound by the OS's choice, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
