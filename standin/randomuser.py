"""A local stand-in for the randomuser.me API (v1.4), with failure injection for tests.

The pipeline must run with no internet, so the embedded stack serves users
from here; the producer talks to it exactly as it would to randomuser.me.

Usage:
    python -m standin.randomuser --host 127.0.0.1 --port 8765 [--malformed-rate 0.0]
    curl 'http://127.0.0.1:8765/api/?results=2&seed=abc&nat=gb,ir'

Endpoints: GET /api/ and /api/1.4/ (same thing), GET /health.

Query parameters (as randomuser.me):
    results   1..5000, default 1; more gives {"error": "..."}
    seed      any string; random when absent (and echoed in info.seed)
    page      >= 1, default 1
    nat       comma list of nationalities (AU,BR,CA,...,US); default all
    inc, exc  comma lists of top-level fields to include / exclude
    format    only "json" (the default)

Shape and quirks reproduced from the real API v1.4 (standin/users.py makes
the users from standin/nationalities.py's data): `location.postcode` is an
int for most nationalities and a string for GB, CA, NL and IE; `id.value` is
null (and `id.name` empty) for IR, NZ, TR and UA; coordinates and timezone
offsets are strings; IR names are Persian, UA and RS names Cyrillic;
`dob`/`registered` are `{"date": "1993-07-20T09:44:18.674Z", "age": N}`;
`login` carries uuid, username, password, salt, md5, sha1, sha256. The same
seed + page + results + nat always gives the same users (ages are computed
against a fixed reference date, so responses are byte-for-byte reproducible).

Failure injection (for tests; all deterministic):
    fail=429|500|503|...   answer with that HTTP status instead of data
    fail=error             answer 200 with {"error": "..."} (a JSON error body)
    fail_times=N           only the first N identical requests fail (identical =
                           same seed, page, results, nat, fail); then success.
                           Absent: every request fails. Use with a seed.
    fail_page=P            only requests for page P fail (a run that breaks midway)
    retry_after=S          send `Retry-After: S` with the injected failure
    delay=S                sleep S seconds before answering (timeouts)
    malformed=R            corrupt a fraction R (0..1) of records: missing
                           fields, wrong types, unparseable values; which
                           records and how is fixed by seed + page.
    --malformed-rate R sets the default R.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standin.nationalities import ALL_NATS, NATIONALITIES
from standin.users import FIELDS, generate

__all__ = ["ALL_NATS", "VERSION", "DataSource", "generate", "make_server", "main"]  # what tests and benchmarks use

MAX_RESULTS = 5000
VERSION = "1.4"


class BadRequest(ValueError):
    """A query parameter randomuser.me would reject; answered as {"error": ...}."""


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = query.get(name)
    return values[-1] if values else default


def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise BadRequest(f"{name} must be {bound}, got {value}")
    return value


def _float_param(query: dict[str, list[str]], name: str, default: float, lo: float, hi: float) -> float:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _list_param(query: dict[str, list[str]], name: str) -> list[str]:
    raw = _one(query, name, "") or ""
    return [item.strip() for item in raw.split(",") if item.strip()]


class DataSource:
    """The service's state: the default malformed rate and the failure-injection counters."""

    def __init__(self, malformed_rate: float = 0.0) -> None:
        self.malformed_rate = malformed_rate
        self.injected_failures = 0  # total injected failures served (tests read it)
        self._failures: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def injected_failure(self, key: tuple, times: int | None) -> bool:
        """True while identical requests (same key) have failed fewer than `times` times."""
        with self._lock:
            count = self._failures.get(key, 0)
            if times is not None and count >= times:
                return False
            self._failures[key] = count + 1
            self.injected_failures += 1
            return True

    def respond(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, extra headers, JSON body) for GET /api/ with this query."""
        try:
            results = _int_param(query, "results", 1, 1)
            if results > MAX_RESULTS:
                raise BadRequest(f"results must be at most {MAX_RESULTS}, got {results}")
            page = _int_param(query, "page", 1, 1)
            seed = _one(query, "seed") or secrets.token_hex(8)
            nats = tuple(n.upper() for n in _list_param(query, "nat")) or ALL_NATS
            unknown = [n for n in nats if n not in NATIONALITIES]
            if unknown:
                raise BadRequest(f"unknown nationality {','.join(unknown)}; known: {','.join(ALL_NATS)}")
            fmt = _one(query, "format", "json")
            if fmt != "json":
                raise BadRequest(f"format {fmt!r} is not supported here; only json")
            malformed = _float_param(query, "malformed", self.malformed_rate, 0.0, 1.0)
            delay = _float_param(query, "delay", 0.0, 0.0, 60.0)
            fail = _one(query, "fail")
            fail_times = _int_param(query, "fail_times", -1, 0)
            fail_page = _int_param(query, "fail_page", 0, 1)
            retry_after = _one(query, "retry_after")
        except BadRequest as exc:
            return 200, {}, {"error": str(exc)}

        if delay:
            time.sleep(delay)
        if fail and (not fail_page or fail_page == page):
            key = (seed, page, results, nats, fail)
            if self.injected_failure(key, None if fail_times < 0 else fail_times):
                headers = {"Retry-After": retry_after} if retry_after else {}
                if fail == "error":
                    return 200, headers, {"error": f"injected error (fail=error, seed={seed}, page={page})"}
                try:
                    status = HTTPStatus(int(fail))
                except ValueError:
                    return 200, {}, {"error": f"fail must be an HTTP status code or 'error', got {fail!r}"}
                return status.value, headers, {"error": f"injected failure {status.value} {status.phrase}"}

        users = generate(seed, page, results, nats, malformed)
        included = {f.lower() for f in _list_param(query, "inc")} or set(FIELDS)
        included -= {f.lower() for f in _list_param(query, "exc")}
        if included != set(FIELDS):
            users = [{k: v for k, v in user.items() if k in included} for user in users]
        return 200, {}, {"results": users, "info": {"seed": seed, "results": results, "page": page, "version": VERSION}}


def make_handler(source: DataSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "userstream-datasource/1.4"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            path = url.path.rstrip("/")
            if path in ("/api", "/api/1.4"):
                status, headers, body = source.respond(parse_qs(url.query, keep_blank_values=True))
            elif path == "/health":
                status, headers, body = 200, {}, {"status": "ok"}
            else:
                status, headers, body = 404, {}, {"error": f"not found: {url.path}; use /api/"}
            payload = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up first (its timeout, e.g. with `delay=`); it already knows.
                self.close_connection = True
                self.log_message("client went away before the response was written")

        def log_message(self, fmt: str, *args: Any) -> None:
            if self.server.verbose:  # type: ignore[attr-defined]
                super().log_message(fmt, *args)

    return Handler


def make_server(host: str = "127.0.0.1", port: int = 8765, malformed_rate: float = 0.0,
                verbose: bool = False) -> ThreadingHTTPServer:
    """A ready-to-serve server (port 0 picks a free port: `server.server_address[1]`)."""
    source = DataSource(malformed_rate)
    server = ThreadingHTTPServer((host, port), make_handler(source))
    server.daemon_threads = True
    server.source = source  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standin.randomuser", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--malformed-rate", type=float,
                        default=0.0,
                        help="default fraction of corrupted records (query param `malformed` overrides)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if not 0.0 <= args.malformed_rate <= 1.0:
        parser.error("--malformed-rate must be between 0 and 1")
    try:
        server = make_server(args.host, args.port, args.malformed_rate, args.verbose)
    except OSError as exc:
        print(f"datasource: cannot listen on {args.host}:{args.port}: {exc}. "
              f"Is another copy running? Pick another --port.", file=sys.stderr)
        return 1
    print(f"datasource: serving randomuser.me v{VERSION}-compatible API on "
          f"http://{args.host}:{server.server_address[1]}/api/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
