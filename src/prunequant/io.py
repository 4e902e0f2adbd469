"""Reading and writing the study's small JSON records."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["read_json", "write_json"]


def write_json(data: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
