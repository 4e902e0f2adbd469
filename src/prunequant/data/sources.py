"""File sources: UEA/UCR ``.ts`` files, the sets bundled with sktime, and ``.npz`` archives."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.data.raw import SPLITS, RawDataset, RawSplit, _raw_split

# Classification sets whose _TRAIN.ts and _TEST.ts ship inside sktime/datasets/data/.
BUNDLED_DATASETS = (
    "JapaneseVowels",
    "BasicMotions",
    "PLAID",
    "OSULeaf",
    "ACSF1",
    "GunPoint",
    "ArrowHead",
    "ItalyPowerDemand",
)


# --------------------------------------------------------------------------- .ts and bundled


def _read_ts(path: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    from sktime.datasets import load_from_tsfile

    path = Path(path)
    if not path.is_file():
        raise ValueError(f".ts file not found: {path}")
    try:
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ", y_dtype="str")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot parse {path} as a UEA/UCR .ts file with class labels: {err}") from err
    series = []
    for i, row in enumerate(frame.itertuples(index=False)):
        channels = [np.asarray(cell, dtype=np.float32) for cell in row]
        if len({len(c) for c in channels}) != 1:
            raise ValueError(f"{path}: case {i} has channels of different lengths; this is not supported")
        series.append(np.stack(channels))
    return series, labels


def load_ts(train_path: str | os.PathLike, test_path: str | os.PathLike | None = None) -> RawDataset:
    """Load UEA/UCR ``.ts`` files; the test file, when given, becomes the test split as is.

    Labels come back lowercased ("Walking" → "walking"): sktime's parser lowercases every line.
    """
    train = _raw_split(*_read_ts(train_path), where=str(train_path))
    test = None if test_path is None else _raw_split(*_read_ts(test_path), where=str(test_path))
    test_name = None if test_path is None else str(test_path)
    source = {"kind": "ts", "train_path": str(train_path), "test_path": test_name}
    return RawDataset(train=train, test=test, source=source)


def _bundled_dir(name: str) -> Path:
    return Path(str(resources.files("sktime.datasets") / "data" / name))


def load_bundled(name: str) -> RawDataset:
    """Load a UEA/UCR set from the copy inside the sktime package; never downloads."""
    if name not in BUNDLED_DATASETS:
        raise ValueError(
            f"dataset {name!r} is not bundled; bundled datasets: {', '.join(BUNDLED_DATASETS)}. "
            "Downloading is not supported offline: get the _TRAIN.ts/_TEST.ts files yourself and "
            "use the 'ts' source instead."
        )
    folder = _bundled_dir(name)
    raw = load_ts(folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts")
    return RawDataset(train=raw.train, test=raw.test, source={"kind": "bundled", "name": name})


# --------------------------------------------------------------------------- .npz


def _npz_pair(archive: Any, x_key: str, y_key: str, path: Path) -> RawSplit:
    where = f"{path} [{x_key}, {y_key}]"
    for have, lack in ((x_key, y_key), (y_key, x_key)):
        if lack not in archive:
            raise ValueError(f"{path}: has {have} but no {lack}; they come in pairs")
    X, y = archive[x_key], archive[y_key]
    if X.ndim == 2:
        X = X[:, None, :]  # [N, T] is a univariate set
    if X.ndim != 3:
        raise ValueError(f"{where}: {x_key} must be [N, C, T] or [N, T], got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"{where}: {y_key} must be [N], got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{where}: {x_key} has {len(X)} samples but {y_key} has {len(y)}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{where}: {x_key} must be numeric, got dtype {X.dtype}")
    return _raw_split(list(X), y, where=where)


def load_npz(path: str | os.PathLike) -> RawDataset:
    """Load ``X``/``y``, or predefined ``X_train``/``y_train`` (+ ``_val``, ``_test``) arrays."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f".npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if "X" in keys and "X_train" in keys:
                raise ValueError(f"{path}: holds both X and X_train; keep one layout")
            if "X" in keys:
                splits = {"train": _npz_pair(archive, "X", "y", path)}
            elif "X_train" in keys:
                splits = {
                    name: _npz_pair(archive, f"X_{name}", f"y_{name}", path)
                    for name in SPLITS
                    if f"X_{name}" in keys or f"y_{name}" in keys
                }
            else:
                raise ValueError(
                    f"{path}: expected arrays X and y, or X_train and y_train (optionally X_val/y_val, "
                    f"X_test/y_test); found {sorted(keys)}"
                )
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(f"{path}: holds object arrays; save plain numeric X and str/int y") from err
        raise
    labels = np.concatenate([split.labels for split in splits.values()])
    if len(np.unique(labels)) < 2:
        raise ValueError(f"{path}: needs at least 2 classes, found {sorted(set(labels))}")
    return RawDataset(**splits, source={"kind": "npz", "path": str(path)})
