"""Configuration checks that run before any job starts.

The JSON schema is the single source of allowed keys, ranges and defaults;
this module turns its verdicts into one line per problem, naming the key.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

__all__ = ["config_problems", "missing_data_files"]


def _key_path(path) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def config_problems(config: dict, schema_path: str | Path) -> list[str]:
    """Every schema violation in ``config`` as 'config key X: problem', sorted by key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    problems = []
    for error in validator.iter_errors(config):
        problems.append(f"config key '{_key_path(error.absolute_path)}': {error.message}")
    return sorted(set(problems))


def missing_data_files(data: dict) -> list[str]:
    """Data paths named in the ``data`` section for the chosen source that do not exist."""
    source = data.get("source")
    if source == "npz":
        wanted = {"data.npz_path": (data.get("npz_path"), "file")}
    elif source == "ts":
        wanted = {"data.ts_train": (data.get("ts_train"), "file"), "data.ts_test": (data.get("ts_test"), "file")}
    elif source == "audio":
        wanted = {"data.audio.root": ((data.get("audio") or {}).get("root"), "folder")}
    else:
        wanted = {}
    problems = []
    for key, (path, kind) in wanted.items():
        if path is None:
            continue
        exists = Path(path).is_file() if kind == "file" else Path(path).is_dir()
        if not exists:
            problems.append(f"config key '{key}': {kind} '{path}' does not exist")
    return problems
