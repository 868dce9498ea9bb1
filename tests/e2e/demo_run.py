"""Helpers for the end-to-end tests: run the main command as a user would, and compare rows field by field.

`DemoProcess` runs `python -m ops.demo` and reads its output as it comes, so a
test can act at a given step (pause Airflow once the run is triggered, stop the
job while the demo waits for rows). `served_users` fetches what a data source
serves through the producer's own mapping, and `assert_rows_match` compares
every field of every such user with its Cassandra row.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core.cassandra_schema import connect
from core.settings import REPO_ROOT, Settings
from producer.source import fetch_batches, make_session
from producer.transform import USER_FIELDS, User, transform


@dataclass
class DemoProcess:
    """`python -m ops.demo ARGS` in the background; stdout read line by line by a thread."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops.demo", *self.args], cwd=REPO_ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **self.env},
        )
        self._queue: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(self.process.stdout, self._queue.put), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stderr, self._stderr.append), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, sink) -> None:
        for line in stream:
            sink(line)

    def wait_for_line(self, text: str, timeout: float) -> str:
        """Block until the demo prints a line containing `text`; fail if it exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None and self._queue.empty():
                    break
                continue
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the demo never printed {text!r} (exit {self.process.poll()}):\n{self.stdout[-3000:]}\n{self.stderr[-2000:]}")

    def finish(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the demo to exit (killed after `timeout`), with all its output."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:  # each ends at its pipe's end, once the demo and its children closed it
            reader.join(timeout=30)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, self.stdout, self.stderr)

    @property
    def stdout(self) -> str:
        return "".join(self.lines)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)


def served_users(url: str, seed: str, users: int, batch: int) -> dict[str, User]:
    """What the data source at `url` serves for this seed, through the producer's own mapping."""
    session = make_session()
    served = {}
    for page in fetch_batches(session, url, users, batch, seed):
        for raw in page.records:
            user = transform(raw, ingested_at=datetime.now(timezone.utc))
            assert isinstance(user, User), user
            served[user.id] = user
    return served


def as_utc(value):
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) and value.tzinfo is None else value


def assert_rows_match(settings: Settings, expected: dict[str, User], started: datetime) -> None:
    """Every expected user has a Cassandra row equal to it in every field, ingested by this run."""
    with connect(settings) as session:
        statement = session.prepare(f"SELECT * FROM {settings.cassandra_keyspace}.{settings.cassandra_table} WHERE id = ?")
        rows = {user_id: session.execute(statement, (uuid.UUID(user_id),)).one() for user_id in expected}
    missing = [user_id for user_id, row in rows.items() if row is None]
    assert not missing, f"{len(missing)} users never reached Cassandra, e.g. {missing[:3]}"
    for user_id, user in expected.items():
        row = rows[user_id]
        for name in USER_FIELDS:
            if name == "ingested_at":
                assert as_utc(row.ingested_at) >= started.replace(microsecond=0), "row is from an earlier run"
                continue
            actual = str(row.id) if name == "id" else as_utc(getattr(row, name))
            assert actual == getattr(user, name), f"user {user_id} field {name}: {actual!r} != {getattr(user, name)!r}"
