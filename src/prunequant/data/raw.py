"""Raw data: labelled variable-length series ``[C, T_i]`` as a source provides them, before any fixing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RawSplit:
    """One split before its series share a length: ``series[i]`` is float32 ``[C, T_i]``."""

    series: list[np.ndarray]
    labels: np.ndarray  # str, [N]
    groups: np.ndarray | None = None  # str, [N]; samples sharing a key never cross splits
    ids: np.ndarray | None = None  # str, [N]; where each sample came from, e.g. "words/yes/spk1_0.wav"

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


def _check_labels_finite(labels: np.ndarray, where: str) -> None:
    """A NaN or inf label would silently become a class named "nan"; name the first one instead."""
    if labels.dtype.kind not in "fc":
        return
    bad = np.flatnonzero(~np.isfinite(labels))
    if bad.size:
        raise UserError(
            f"{where}: label of sample {bad[0]} is {labels[bad[0]]} ({bad.size} non-finite label(s) in all); "
            "every label must be a finite class value: fix or drop those samples"
        )


def _raw_split(
    series: Sequence[Any], labels: Any, groups: Any = None, *, where: str, ids: Sequence[str] | None = None
) -> RawSplit:
    """Normalise dtypes and reject what would silently poison training (NaN, ragged channels)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UserError(
            f"{where}: labels must be one-dimensional, got shape {labels.shape}; store one label per sample"
        )
    _check_labels_finite(labels, where)
    labels = labels.astype(str)
    if len(series) == 0:
        raise UserError(f"{where}: holds no samples; add labelled samples")
    if len(series) != len(labels):
        raise UserError(
            f"{where}: {len(series)} series but {len(labels)} labels; give exactly one label per series"
        )
    series = [np.asarray(s, dtype=np.float32) for s in series]
    for i, s in enumerate(series):
        if s.ndim != 2 or s.shape[1] == 0:
            raise UserError(
                f"{where}: sample {i} has shape {s.shape}, expected [channels, time>0]; "
                "fix or drop that sample"
            )
        if not np.isfinite(s).all():
            raise UserError(f"{where}: sample {i} contains NaN or inf; clean or impute it first")
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        if groups.shape != labels.shape:
            raise ValueError(f"{where}: {len(groups)} group keys for {len(labels)} samples")
    if ids is not None:
        ids = np.asarray(ids).astype(str)
        if ids.shape != labels.shape:
            raise ValueError(f"{where}: {len(ids)} sample ids for {len(labels)} samples")
    return RawSplit(series=series, labels=labels, groups=groups, ids=ids)


def _take(split: RawSplit, idx: np.ndarray) -> RawSplit:
    groups = None if split.groups is None else split.groups[idx]
    ids = None if split.ids is None else split.ids[idx]
    return RawSplit(series=[split.series[i] for i in idx], labels=split.labels[idx], groups=groups, ids=ids)


def _check_positive(key_prefix: str = "data.", **values: int) -> None:
    """Each value must be an integer >= 1; the error names the config key ``key_prefix + name``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"config key '{key_prefix}{name}': must be a positive integer, got {value!r}")


def _check_readable_file(path: Path, *, key: str, what: str) -> None:
    """Fail with one line if ``path`` (named by config key ``key``) is not a readable, non-empty file.

    ``what`` names the expected content, e.g. "an .npz archive"; it goes into the fix.
    """
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file; set {key} to {what}")
    if not path.is_file():
        raise UserError(f"{path}: file not found; set {key} to {what} that exists")
    try:
        with open(path, "rb"):
            pass
    except PermissionError as err:
        raise UserError(f"{path}: permission denied; make the file readable (chmod u+r {path})") from err
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: file is empty (0 bytes); set {key} to {what} that holds data")
