"""Configuration checks that run before any job starts.

The JSON schema is the single source of allowed keys, ranges and defaults;
this module turns its verdicts into one line per problem, naming the key.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from prunequant.data.audio import wav_files
from prunequant.model import BlockSpec, ModelSpec

__all__ = ["config_problems", "missing_data_files", "model_problems", "active_data_settings", "data_files"]

# The data keys each source reads; the others do not affect its result.
SOURCE_KEYS = {
    "bundled": ("bundled_name",),
    "npz": ("npz_path",),
    "ts": ("ts_train", "ts_test"),
    "audio": ("audio",),
}
SHARED_DATA_KEYS = ("source", "length", "length_method", "val_fraction", "test_fraction")


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
        wanted = {
            "data.ts_train": (data.get("ts_train"), "file"),
            "data.ts_test": (data.get("ts_test"), "file"),
        }
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


def model_problems(blocks: list[dict], length: int) -> list[str]:
    """Why the configured blocks cannot run on series of ``length`` steps, if they cannot."""
    spec = ModelSpec(in_channels=1, n_classes=2, blocks=tuple(BlockSpec(**block) for block in blocks))
    if spec.output_length(length) >= 1:
        return []
    return [
        f"config key 'model.blocks': {len(blocks)} block(s) shrink a series of data.length={length} steps "
        "to nothing; use a longer data.length, smaller kernel_size or stride, or fewer blocks"
    ]


def active_data_settings(data: dict) -> dict:
    """The ``data`` settings the chosen source reads: changing any other key changes nothing."""
    keys = SHARED_DATA_KEYS + SOURCE_KEYS[data["source"]]
    return {key: data[key] for key in keys if key in data}


def data_files(data: dict) -> list[str]:
    """The files the chosen source reads, so that editing, adding or removing one reruns the data stage."""
    source = data["source"]
    if source == "npz":
        paths = [data["npz_path"]]
    elif source == "ts":
        paths = [data["ts_train"], data.get("ts_test")]
    elif source == "audio":
        paths = wav_files(Path(data["audio"]["root"]))
    else:
        paths = []
    return [str(path) for path in paths if path is not None]
