"""Where the embedded stack keeps things: one git-ignored folder, `.stack/` by default.

    .stack/jars/<profile>/   jars fetched by Maven (stack/pom.xml)
    .stack/conf/             configs rendered from stack/conf/ templates
    .stack/data/<service>/   each service's data (wiped by `make clean`)
    .stack/logs/<service>.log
    .stack/run/<service>.pid
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def jars(self) -> Path:
        return self.home / "jars"

    @property
    def conf(self) -> Path:
        return self.home / "conf"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    def data(self, service: str) -> Path:
        return self.home / "data" / service

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        return self.run / f"{service}.pid"

    def make_dirs(self) -> None:
        for folder in (self.jars, self.conf, self.logs, self.run, self.home / "data"):
            folder.mkdir(parents=True, exist_ok=True)
