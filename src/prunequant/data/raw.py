"""Raw data: labelled variable-length series ``[C, T_i]`` as a source provides them, before any fixing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RawSplit:
    """One split before its series share a length: ``series[i]`` is float32 ``[C, T_i]``."""

    series: list[np.ndarray]
    labels: np.ndarray  # str, [N]
    groups: np.ndarray | None = None  # str, [N]; samples sharing a key never cross splits

    def __len__(self) -> int:
        return len(self.series)


@dataclass(frozen=True)
class RawDataset:
    """What a source provides: a train split, and the val/test splits it predefines, if any."""

    train: RawSplit
    source: dict[str, Any]  # kind plus name or paths; recorded verbatim in the metadata
    val: RawSplit | None = None
    test: RawSplit | None = None

    def given_splits(self) -> list[str]:
        return [name for name in SPLITS if getattr(self, name) is not None]


def _raw_split(series: Sequence[Any], labels: Any, groups: Any = None, *, where: str) -> RawSplit:
    """Normalise dtypes and reject what would silently poison training (NaN, ragged channels)."""
    series = [np.asarray(s, dtype=np.float32) for s in series]
    labels = np.asarray(labels).astype(str)
    if labels.ndim != 1:
        raise ValueError(f"{where}: labels must be one-dimensional, got shape {labels.shape}")
    if len(series) == 0:
        raise ValueError(f"{where}: no samples")
    if len(series) != len(labels):
        raise ValueError(f"{where}: {len(series)} series but {len(labels)} labels; they must match")
    for i, s in enumerate(series):
        if s.ndim != 2 or s.shape[1] == 0:
            raise ValueError(f"{where}: sample {i} has shape {s.shape}, expected [channels, time>0]")
        if not np.isfinite(s).all():
            raise ValueError(f"{where}: sample {i} contains NaN or inf; clean or impute it first")
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        if groups.shape != labels.shape:
            raise ValueError(f"{where}: {len(groups)} group keys for {len(labels)} samples")
    return RawSplit(series=series, labels=labels, groups=groups)


def _take(split: RawSplit, idx: np.ndarray) -> RawSplit:
    groups = None if split.groups is None else split.groups[idx]
    return RawSplit(series=[split.series[i] for i in idx], labels=split.labels[idx], groups=groups)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
