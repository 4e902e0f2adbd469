"""The summary table: one row per variant, with the raw metrics and derived comparisons.

A variant is one (model, precision, runtime) triple, written ``rate0.1/int8/onnxruntime``. The
derived columns compare each variant with the unpruned ``baseline`` model:

- ``accuracy_delta_pp``: accuracy minus the baseline's at the same precision and runtime, in
  percentage points, so it isolates what pruning cost.
- ``accuracy_delta_pp_vs_fp32_torch``: accuracy minus the baseline fp32/torch accuracy (the trained
  checkpoint as is), so it counts pruning, export and quantization together.
- ``size_ratio``: serialized size over the baseline fp32/torch size; below 1 is smaller.
- ``speedup_batch64``: the baseline fp32 batch-64 latency in the same runtime over this variant's;
  above 1 is faster. Runtimes are never compared with each other, because their fixed overheads
  differ more than the models do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

__all__ = [
    "BASELINE_MODEL",
    "DERIVED_COLUMNS",
    "METRIC_KEYS",
    "SUMMARY_COLUMNS",
    "build_summary",
    "write_summary_csv",
]

PathLike = str | os.PathLike

BASELINE_MODEL = "baseline"
REFERENCE_SETTING = ("fp32", "torch")  # the trained checkpoint run as is

# Required keys of one metrics JSON and the type each must hold.
_METRIC_TYPES: dict[str, type] = {
    "model": str,
    "prune_rate": float,
    "precision": str,
    "runtime": str,
    "accuracy": float,  # percent
    "loss": float,  # mean cross-entropy
    "parameters": int,
    "macs": int,
    "size_bytes": int,  # serialized file
    "weight_bytes": int,
    "latency_batch1_ms": float,  # median per call
    "latency_batch64_ms": float,
    "latency_threads": int,
}
METRIC_KEYS = tuple(_METRIC_TYPES)
DERIVED_COLUMNS = (
    "accuracy_delta_pp",
    "accuracy_delta_pp_vs_fp32_torch",
    "size_ratio",
    "speedup_batch64",
)
SUMMARY_COLUMNS = ("variant", *METRIC_KEYS, *DERIVED_COLUMNS)

# Known values sort in pipeline order (reference first); unknown ones follow alphabetically.
_PRECISION_ORDER = ("fp32", "int8")
_RUNTIME_ORDER = ("torch", "onnxruntime")


def build_summary(metric_paths: Iterable[PathLike]) -> pd.DataFrame:
    """One row per variant with the raw metrics and the derived comparisons with the baseline."""
    records, sources = [], {}
    for path in map(Path, metric_paths):
        record = _read_metrics(path)
        variant = "/".join((record["model"], record["precision"], record["runtime"]))
        if variant in sources:
            raise ValueError(f"variant {variant} appears in both {sources[variant]} and {path}")
        sources[variant] = path
        records.append({"variant": variant, **record})
    if not records:
        raise ValueError("no metrics files given")
    records.sort(key=_sort_key)
    summary = pd.DataFrame(records, columns=["variant", *METRIC_KEYS])
    return _add_derived(summary)[list(SUMMARY_COLUMNS)]


def write_summary_csv(summary: pd.DataFrame, path: PathLike) -> None:
    path = _prepare(path)
    summary.to_csv(path, index=False)


def _read_metrics(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in METRIC_KEYS if key not in record]
    if missing:
        raise ValueError(f"{path}: missing required key(s): {', '.join(missing)}")
    return {key: _coerce(record[key], kind, path, key) for key, kind in _METRIC_TYPES.items()}


def _coerce(value: object, kind: type, path: Path, key: str) -> str | int | float:
    # bool is an int subclass; a true/false in a numeric field is a bug upstream, not a number.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        ok = isinstance(value, str) and value != ""
    elif kind is int:
        ok = number and math.isfinite(value) and float(value).is_integer()
    else:
        ok = number and math.isfinite(value)
    if not ok:
        raise ValueError(f"{path}: key {key!r} is {value!r}, expected a {kind.__name__}")
    return kind(value)


def _rank(value: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def _setting_key(setting: tuple[str, str]) -> tuple:
    return (_rank(setting[0], _PRECISION_ORDER), _rank(setting[1], _RUNTIME_ORDER))


def _sort_key(record: dict) -> tuple:
    setting = (record["precision"], record["runtime"])
    return (record["prune_rate"], *_setting_key(setting), record["model"])


def _add_derived(summary: pd.DataFrame) -> pd.DataFrame:
    base = summary[summary["model"] == BASELINE_MODEL].set_index(["precision", "runtime"])
    settings = list(zip(summary["precision"], summary["runtime"], strict=True))
    fp32_same_runtime = [("fp32", runtime) for _, runtime in settings]
    needed = set(settings) | set(fp32_same_runtime) | {REFERENCE_SETTING}
    missing = sorted(needed - set(base.index), key=_setting_key)
    if missing:
        raise ValueError(
            f"no {BASELINE_MODEL!r} metrics for {', '.join('/'.join(s) for s in missing)}: every "
            "variant is compared with the baseline at its own precision/runtime, with baseline "
            "fp32 in its runtime and with baseline fp32/torch"
        )
    reference = base.loc[REFERENCE_SETTING]
    same = base.loc[settings]
    fp32 = base.loc[fp32_same_runtime]
    return summary.assign(
        accuracy_delta_pp=summary["accuracy"].to_numpy() - same["accuracy"].to_numpy(),
        accuracy_delta_pp_vs_fp32_torch=summary["accuracy"] - reference["accuracy"],
        size_ratio=summary["size_bytes"] / reference["size_bytes"],
        speedup_batch64=fp32["latency_batch64_ms"].to_numpy() / summary["latency_batch64_ms"].to_numpy(),
    )


def _settings(summary: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(summary["precision"], summary["runtime"], strict=True)), key=_setting_key)


def _rows(summary: pd.DataFrame, setting: tuple[str, str]) -> pd.DataFrame:
    precision, runtime = setting
    return summary[(summary["precision"] == precision) & (summary["runtime"] == runtime)]


def _baseline_row(summary: pd.DataFrame, setting: tuple[str, str]) -> pd.Series:
    rows = _rows(summary, setting)
    return rows[rows["model"] == BASELINE_MODEL].iloc[0]


def _prepare(path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
