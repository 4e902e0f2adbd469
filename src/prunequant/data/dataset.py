"""The prepared dataset: build it from a source (:func:`prepare_dataset`), save it, load it back.

:func:`save_dataset` writes the arrays with a metadata JSON that says where they came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.data.audio import AudioOptions, load_audio_folder
from prunequant.data.raw import SPLITS, RawDataset
from prunequant.data.sources import load_bundled, load_npz, load_ts
from prunequant.data.splits import _check_fraction, split_dataset
from prunequant.data.transforms import (
    _check_length_args,
    class_names,
    encode_labels,
    standardize,
    to_fixed_length,
)

SOURCES = ("bundled", "npz", "ts", "audio")
_ARRAY_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


@dataclass(frozen=True)
class PreparedDataset:
    """Fixed-shape, standardised splits: X float32 ``[N, C, L]``, y int64 indices into ``classes``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    mean: np.ndarray  # per-channel train mean subtracted before scaling
    std: np.ndarray  # per-channel train std divided by
    provenance: dict[str, Any]  # source, length_method, seed, fractions: what cannot be read off the arrays

    @property
    def n_channels(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def length(self) -> int:
        return int(self.X_train.shape[2])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def metadata(self) -> dict[str, Any]:
        """A JSON-able description: source, shapes, split sizes, class counts, scaling, seed."""
        counts = {}
        for name in SPLITS:
            per_class = np.bincount(self.split(name)[1], minlength=len(self.classes))
            counts[name] = {label: int(n) for label, n in zip(self.classes, per_class, strict=True)}
        return {
            **self.provenance,
            "classes": list(self.classes),
            "n_classes": len(self.classes),
            "n_channels": self.n_channels,
            "length": self.length,
            "split_sizes": {name: int(len(self.split(name)[1])) for name in SPLITS},
            "class_counts": counts,
            "standardization": {"mean": self.mean.tolist(), "std": self.std.tolist()},
        }


def _load_source(
    source: str,
    *,
    bundled_name: str | None,
    npz_path: str | os.PathLike | None,
    ts_train: str | os.PathLike | None,
    ts_test: str | os.PathLike | None,
    audio: AudioOptions | dict[str, Any] | None,
) -> RawDataset:
    needed = {
        "bundled": ("bundled_name", bundled_name),
        "npz": ("npz_path", npz_path),
        "ts": ("ts_train", ts_train),
        "audio": ("audio", audio),
    }
    if source not in needed:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    arg_name, value = needed[source]
    if value is None:
        raise ValueError(f"source={source!r} needs {arg_name}")
    if source == "bundled":
        return load_bundled(bundled_name)
    if source == "npz":
        return load_npz(npz_path)
    if source == "ts":
        return load_ts(ts_train, ts_test)
    options = audio if isinstance(audio, AudioOptions) else AudioOptions.from_dict(dict(audio))
    kwargs = asdict(options)
    return load_audio_folder(kwargs.pop("root"), **kwargs)


def prepare_dataset(
    *,
    source: str,
    bundled_name: str | None = None,
    npz_path: str | os.PathLike | None = None,
    ts_train: str | os.PathLike | None = None,
    ts_test: str | os.PathLike | None = None,
    audio: AudioOptions | dict[str, Any] | None = None,
    length: int,
    length_method: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> PreparedDataset:
    """Load ``source``, split it, bring every series to ``length`` steps, standardise on train.

    Only the argument that ``source`` names is read: ``bundled_name``, ``npz_path``,
    ``ts_train`` (+ optional ``ts_test``) or ``audio``.
    """
    _check_length_args(length, length_method)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    raw = _load_source(
        source, bundled_name=bundled_name, npz_path=npz_path, ts_train=ts_train, ts_test=ts_test, audio=audio
    )
    splits = split_dataset(raw, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    classes = class_names(*(s.labels for s in splits))
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes, found {classes}")
    fixed = [to_fixed_length(s.series, length, length_method) for s in splits]
    (X_train, X_val, X_test), (mean, std) = standardize(*fixed)
    y_train, y_val, y_test = (encode_labels(s.labels, classes) for s in splits)
    provenance = {
        "source": {**raw.source, "given_splits": raw.given_splits()},
        "length_method": length_method,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
    }
    return PreparedDataset(X_train, y_train, X_val, y_val, X_test, y_test, classes, mean, std, provenance)


# --------------------------------------------------------------------------- files


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file and rename, so a killed job never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)


def save_dataset(dataset: PreparedDataset, npz_path: str | os.PathLike, meta_path: str | os.PathLike) -> None:
    """Write the arrays to one ``.npz`` (no pickled objects) and :meth:`PreparedDataset.metadata` as JSON."""
    arrays = {key: getattr(dataset, key) for key in _ARRAY_KEYS}
    arrays["classes"] = np.array(dataset.classes, dtype=str)
    arrays["mean"], arrays["std"] = dataset.mean, dataset.std
    arrays["provenance"] = np.array(json.dumps(dataset.provenance))
    # Writing to a handle stops numpy from appending ".npz" to a differently named output.
    _atomic_write(Path(npz_path), lambda handle: np.savez_compressed(handle, **arrays))
    text = json.dumps(dataset.metadata(), indent=2) + "\n"
    _atomic_write(Path(meta_path), lambda handle: handle.write(text.encode()))


def load_dataset(npz_path: str | os.PathLike) -> PreparedDataset:
    """Read a dataset written by :func:`save_dataset`."""
    path = Path(npz_path)
    if not path.is_file():
        raise ValueError(f"prepared dataset not found: {path}")
    with np.load(path, allow_pickle=False) as archive:
        missing = sorted(set(_ARRAY_KEYS + ("classes", "mean", "std", "provenance")) - set(archive.files))
        if missing:
            raise ValueError(f"{path} is not a prepared dataset: missing arrays {missing}")
        arrays = {key: archive[key] for key in _ARRAY_KEYS}
        return PreparedDataset(
            **arrays,
            classes=archive["classes"].tolist(),
            mean=archive["mean"],
            std=archive["std"],
            provenance=json.loads(str(archive["provenance"])),
        )
