"""Where every benchmark writes its result: bench/results/<name>-<UTC time>.json (git-ignored)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def utc_stamp() -> str:
    """The UTC time in result file names, e.g. 20261128T174021Z."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"


def write_result(name: str, result: dict[str, Any], rendered: str, stamp: str | None = None) -> Path:
    """Write the result as JSON, print its table and where it went; return the JSON's path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{stamp or utc_stamp()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(rendered)
    print(f"results: {path.relative_to(REPO_ROOT)}")
    return path
