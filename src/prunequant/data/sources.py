"""File sources: UEA/UCR ``.ts`` files, the sets bundled with sktime, and ``.npz`` archives.

Every sample gets an id that says where it came from: ``<file>:<line>`` for a ``.ts`` case,
``<name>:<split>[<index>]`` for a bundled set, ``<file>[<index>]`` for an ``.npz`` with ``X``/``y``
(``<file>:<split>[<index>]`` with predefined split arrays).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.data.raw import SPLITS, RawDataset, RawSplit, _check_readable_file, _raw_split
from prunequant.errors import UserError

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

_TS_LINE_FORMAT = "one case per line after @data: 'v1,v2,...:v1,v2,...:label'"


# --------------------------------------------------------------------------- .ts and bundled


def _ts_text(path: Path, key: str) -> str:
    _check_readable_file(path, key=key, what="a UEA/UCR .ts file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: is not a text file (byte {err.start} is not UTF-8); set {key} to a UEA/UCR .ts file"
        ) from err


def _ts_header_labels(path: Path, number: int, line: str) -> list[str]:
    parts = line.split()
    if len(parts) < 3 or parts[1].lower() != "true":
        raise UserError(
            f"{path}:{number}: '{line}' declares no class labels; a classification .ts file needs "
            "'@classLabel true <label> <label> ...'"
        )
    return parts[2:]


def _scan_ts(path: Path, key: str) -> list[int]:
    """The line number of every case; checks the header and that each label is declared in @classLabel.

    sktime's parser accepts undeclared labels and fails on malformed files with errors that name
    neither the file nor the line; this scan names both.
    """
    declared, in_data, case_lines = None, False, []
    for number, raw_line in enumerate(_ts_text(path, key).splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            lower = line.lower()
            if lower.startswith("@classlabel"):
                declared = _ts_header_labels(path, number, line)
            elif lower.startswith("@data"):
                in_data = True
            elif not lower.startswith("@"):
                raise UserError(
                    f"{path}:{number}: expected a '@' header line before @data, got {line[:40]!r}; "
                    "is this a UEA/UCR .ts file?"
                )
            continue
        if declared is None:
            raise UserError(f"{path}: no '@classLabel true ...' line before @data; declare the class labels")
        if ":" not in line:
            raise UserError(f"{path}:{number}: case has no ':label' at its end; write {_TS_LINE_FORMAT}")
        label = line.rsplit(":", 1)[1].strip()
        if label not in declared:
            raise UserError(
                f"{path}:{number}: label {label!r} is not declared in @classLabel {declared}; "
                "fix the label or add it to the @classLabel line"
            )
        case_lines.append(number)
    if not in_data:
        raise UserError(
            f"{path}: no @data line; a UEA/UCR .ts file has its '@' headers, then @data, then cases"
        )
    if not case_lines:
        raise UserError(f"{path}: no cases after @data; write {_TS_LINE_FORMAT}")
    return case_lines


def _read_ts(path: str | os.PathLike, key: str) -> RawSplit:
    path = Path(path)
    case_lines = _scan_ts(path, key)
    # Imported after the scan: a broken file fails at once, without paying sktime's import time.
    from sktime.datasets import load_from_tsfile

    try:
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ", y_dtype="str")
    except Exception as err:  # sktime's parser raises OSError, ValueError, TypeError, IndexError, ...
        reason = " ".join(str(err).split())
        raise UserError(
            f"{path}: cannot be parsed as a UEA/UCR .ts file ({type(err).__name__}: {reason}); "
            f"check its headers and write {_TS_LINE_FORMAT}"
        ) from err
    if len(frame) != len(case_lines):
        raise UserError(
            f"{path}: the parser read {len(frame)} cases but the file has {len(case_lines)} case lines; "
            f"check its headers and write {_TS_LINE_FORMAT}"
        )
    series = []
    for number, row in zip(case_lines, frame.itertuples(index=False), strict=True):
        channels = [np.asarray(cell, dtype=np.float32) for cell in row]
        lengths = sorted({len(c) for c in channels})
        if len(lengths) != 1:
            raise UserError(
                f"{path}:{number}: channels have different lengths {lengths}; give every channel of a case "
                "the same length"
            )
        series.append(np.stack(channels))
    ids = [f"{path}:{number}" for number in case_lines]
    return _raw_split(series, labels, where=str(path), ids=ids)


def load_ts(train_path: str | os.PathLike, test_path: str | os.PathLike | None = None) -> RawDataset:
    """Load UEA/UCR ``.ts`` files; the test file, when given, becomes the test split as is.

    Labels come back lowercased ("Walking" → "walking"): sktime's parser lowercases every line.
    Each sample's id is ``<file>:<line>``.
    """
    train = _read_ts(train_path, "data.ts_train")
    test = None if test_path is None else _read_ts(test_path, "data.ts_test")
    test_name = None if test_path is None else str(test_path)
    source = {"kind": "ts", "train_path": str(train_path), "test_path": test_name}
    return RawDataset(train=train, test=test, source=source)


def _bundled_dir(name: str) -> Path:
    return Path(str(resources.files("sktime.datasets") / "data" / name))


def load_bundled(name: str) -> RawDataset:
    """Load a UEA/UCR set from the copy inside the sktime package; never downloads.

    Each sample's id is ``<name>:<split>[<index>]``, the index counting cases of that file.
    """
    if name not in BUNDLED_DATASETS:
        raise UserError(
            f"config key 'data.bundled_name': dataset {name!r} is not bundled; bundled datasets: "
            f"{', '.join(BUNDLED_DATASETS)}. Downloading is not supported offline: get the "
            "_TRAIN.ts/_TEST.ts files yourself and use the 'ts' source instead."
        )
    folder = _bundled_dir(name)
    raw = load_ts(folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts")

    def renamed(split: RawSplit, split_name: str) -> RawSplit:
        return replace(split, ids=np.array([f"{name}:{split_name}[{i}]" for i in range(len(split))]))

    return RawDataset(
        train=renamed(raw.train, "train"),
        test=renamed(raw.test, "test"),
        source={"kind": "bundled", "name": name},
    )


# --------------------------------------------------------------------------- .npz

_NPZ_FIX = "numpy.savez(path, X=X, y=y)"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members; an empty zip
_NPY_MAGIC = b"\x93NUMPY"


def _read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, read eagerly so that a corrupt member fails here, with the file named."""
    _check_readable_file(path, key="data.npz_path", what="an .npz archive")
    with open(path, "rb") as handle:
        head = handle.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC):
        raise UserError(
            f"{path}: is a single .npy array, not an .npz archive; save X and y together with {_NPZ_FIX}"
        )
    if not head.startswith(_ZIP_MAGIC):
        raise UserError(
            f"{path}: is not an .npz archive (no zip header); "
            f"set data.npz_path to a file written by {_NPZ_FIX}"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise UserError(
                f"{path}: holds object arrays; save plain numeric X and str/int y with {_NPZ_FIX}"
            ) from err
        raise UserError(
            f"{path}: is a damaged .npz archive (truncated or corrupt); write it again with {_NPZ_FIX}"
        ) from err
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as err:
        raise UserError(
            f"{path}: is a damaged .npz archive (truncated or corrupt); write it again with {_NPZ_FIX}"
        ) from err


def _npz_pair(arrays: dict[str, Any], x_key: str, y_key: str, path: Path, split: str | None) -> RawSplit:
    for have, lack in ((x_key, y_key), (y_key, x_key)):
        if lack not in arrays:
            raise UserError(
                f"{path}: has {have} but no {lack}; they come in pairs: add {lack} or drop {have}"
            )
    X, y = arrays[x_key], arrays[y_key]
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "iuf":
        kind = getattr(X, "dtype", type(X).__name__)
        raise UserError(f"{path}: {x_key} has dtype {kind}, expected numbers; store {x_key} as a float array")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "biufUS":
        kind = getattr(y, "dtype", type(y).__name__)
        raise UserError(
            f"{path}: {y_key} has dtype {kind}, expected integer or string labels; store {y_key} as such"
        )
    if X.ndim == 2:
        X = X[:, None, :]  # [N, T] is a univariate set
    if X.ndim != 3:
        raise UserError(
            f"{path}: {x_key} has shape {X.shape}, expected [N, C, T] or [N, T]; reshape {x_key} to "
            "samples x channels x time"
        )
    if y.ndim != 1:
        raise UserError(f"{path}: {y_key} has shape {y.shape}, expected [N]; store one label per sample")
    if len(X) != len(y):
        raise UserError(
            f"{path}: {x_key} has {len(X)} samples but {y_key} has {len(y)}; "
            "give exactly one label per sample"
        )
    prefix = f"{path}" if split is None else f"{path}:{split}"
    ids = [f"{prefix}[{i}]" for i in range(len(X))]
    return _raw_split(list(X), y, where=f"{path} [{x_key}, {y_key}]", ids=ids)


def load_npz(path: str | os.PathLike) -> RawDataset:
    """Load ``X``/``y``, or predefined ``X_train``/``y_train`` (+ ``_val``, ``_test``) arrays."""
    path = Path(path)
    arrays = _read_npz_arrays(path)
    if "X" in arrays and "X_train" in arrays:
        raise UserError(f"{path}: holds both X and X_train; keep one layout")
    if "X" in arrays:
        splits = {"train": _npz_pair(arrays, "X", "y", path, None)}
    elif "X_train" in arrays:
        splits = {
            name: _npz_pair(arrays, f"X_{name}", f"y_{name}", path, name)
            for name in SPLITS
            if f"X_{name}" in arrays or f"y_{name}" in arrays
        }
    else:
        raise UserError(
            f"{path}: expected arrays X and y, or X_train and y_train (optionally X_val/y_val, "
            f"X_test/y_test); found {sorted(arrays)}"
        )
    labels = np.concatenate([split.labels for split in splits.values()])
    if len(np.unique(labels)) < 2:
        raise UserError(
            f"{path}: needs at least 2 classes, found {sorted(set(labels.tolist()))}; "
            "add samples of other classes"
        )
    return RawDataset(**splits, source={"kind": "npz", "path": str(path)})
