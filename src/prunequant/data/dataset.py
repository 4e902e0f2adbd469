"""The prepared dataset: build it from a source (:func:`prepare_dataset`), save it, load it back.

:func:`save_dataset` writes the arrays with a metadata JSON that says where they came from.
Next to the arrays it keeps each sample's identity (``ids_<split>``: a WAV path relative to the audio
root, ``<file>:<line>`` for ``.ts``, ``<file>[<index>]`` for ``.npz``, ``<name>:<split>[<index>]`` for
a bundled set) and the sorted group names of every split, so that predictions can be traced back to
recordings and speakers.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.data.audio import AudioOptions, load_audio_folder
from prunequant.data.raw import SPLITS, RawDataset, RawSplit, _check_positive
from prunequant.data.sources import load_bundled, load_npz, load_ts
from prunequant.data.splits import _check_fraction, split_dataset
from prunequant.data.transforms import (
    _check_length_args,
    class_names,
    encode_labels,
    standardize,
    to_fixed_length,
)
from prunequant.errors import UserError

SOURCES = ("bundled", "npz", "ts", "audio")
_ARRAY_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "ids_train", "ids_val", "ids_test")


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
    ids_train: np.ndarray  # str [N]: where each sample came from (a WAV path, "<file>:<line>", ...)
    ids_val: np.ndarray
    ids_test: np.ndarray
    groups: dict[str, list[str]]  # split name -> sorted group names in it (e.g. speakers); [] without groups

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

    def sample_ids(self, name: str) -> np.ndarray:
        """Each sample's identity in split ``name``, aligned with :meth:`split`."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, f"ids_{name}")

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
            "groups": {name: list(self.groups[name]) for name in SPLITS},
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
    frames: int | None,
) -> RawDataset:
    needed = {
        "bundled": ("bundled_name", bundled_name),
        "npz": ("npz_path", npz_path),
        "ts": ("ts_train", ts_train),
        "audio": ("audio", audio),
    }
    if source not in needed:
        raise UserError(f"config key 'data.source': must be one of {SOURCES}, got {source!r}")
    arg_name, value = needed[source]
    if value is None:
        raise UserError(f"config key 'data.{arg_name}': source={source!r} needs it; set data.{arg_name}")
    if source == "bundled":
        return load_bundled(bundled_name)
    if source == "npz":
        return load_npz(npz_path)
    if source == "ts":
        return load_ts(ts_train, ts_test)
    options = audio if isinstance(audio, AudioOptions) else AudioOptions.from_dict(dict(audio))
    kwargs = asdict(options)
    return load_audio_folder(kwargs.pop("root"), **kwargs, frames=frames)


def _source_name(source: dict[str, Any]) -> str:
    """What the user named as the data: a file, a folder or a bundled set."""
    kind = source["kind"]
    if kind == "bundled":
        return f"bundled dataset {source['name']}"
    if kind == "ts":
        return source["train_path"]
    if kind == "npz":
        return source["path"]
    if kind == "audio":
        return source["root"]
    return "data"


def _class_shortage_fix(
    label: str, split: str, counts: dict[str, int], minimum: int, given: list[str]
) -> str:
    """What the user can do about too few samples of ``label`` in ``split``: only advice that can help."""
    fixes = [f"add more samples of class {label!r}"]
    if split in given:
        fixes = [f"add samples of class {label!r} to the source's own {split} split"]
    elif sum(counts.values()) >= len(SPLITS) * minimum:
        # Enough samples in all: the split sizes, not the data, leave this split short.
        if split == "train":
            fixes.append("use smaller data.val_fraction / data.test_fraction")
        else:
            fixes.append(f"use a larger data.{split}_fraction")
    if minimum > 1:
        fixes.append("lower data.min_class_samples")
    return ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]


def _check_class_counts(
    splits: tuple[RawSplit, ...], classes: list[str], min_class_samples: int, raw: RawDataset
) -> None:
    """Every split must hold every class at least ``min_class_samples`` times.

    A class missing from the test split makes its accuracy silently undefined; missing from val, model
    selection ignores it; missing from train, the model can never predict it.
    """
    counts = {name: Counter(split.labels.tolist()) for name, split in zip(SPLITS, splits, strict=True)}
    for label in classes:
        for name in SPLITS:
            if counts[name][label] >= min_class_samples:
                continue
            per_split = {other: counts[other][label] for other in SPLITS}
            summary = ", ".join(f"{other} {n}" for other, n in per_split.items())
            fix = _class_shortage_fix(label, name, per_split, min_class_samples, raw.given_splits())
            raise UserError(
                f"{_source_name(raw.source)}: class {label!r} has {counts[name][label]} sample(s) "
                f"in the {name} split ({summary}), fewer than data.min_class_samples={min_class_samples}; "
                f"{fix}"
            )


def _sample_ids(split: RawSplit, name: str) -> np.ndarray:
    if split.ids is not None:
        return split.ids.astype(str)
    return np.array([f"{name}[{i}]" for i in range(len(split))], dtype=str)


def _group_names(split: RawSplit) -> list[str]:
    return [] if split.groups is None else sorted(set(split.groups.tolist()))


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
    min_class_samples: int = 1,
    test_groups: list[str] | None = None,
    val_groups: list[str] | None = None,
    fold: int | None = None,
    split_seed: int | None = None,
) -> PreparedDataset:
    """Load ``source``, split it, bring every series to ``length`` steps, standardise on train.

    Only the argument that ``source`` names is read: ``bundled_name``, ``npz_path``,
    ``ts_train`` (+ optional ``ts_test``) or ``audio``. For audio with ``length_method="pad_crop"``
    the waveform itself is padded with silence or cropped, so the MFCCs have exactly ``length`` frames.
    ``test_groups`` / ``val_groups`` / ``fold`` choose groups by name, and ``split_seed`` redraws
    train/val with the test split kept (see :func:`split_dataset`). Every split must hold every
    class at least ``min_class_samples`` times; otherwise, and for any unreadable or malformed
    input, a one-line :class:`~prunequant.errors.UserError` is raised.
    """
    _check_length_args(length, length_method)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    _check_positive(min_class_samples=min_class_samples)
    raw = _load_source(
        source,
        bundled_name=bundled_name,
        npz_path=npz_path,
        ts_train=ts_train,
        ts_test=ts_test,
        audio=audio,
        frames=length if length_method == "pad_crop" else None,
    )
    splits = split_dataset(
        raw,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        test_groups=test_groups,
        val_groups=val_groups,
        fold=fold,
        split_seed=split_seed,
    )
    classes = class_names(*(s.labels for s in splits))
    if len(classes) < 2:
        raise UserError(
            f"{_source_name(raw.source)}: needs at least 2 classes, found {classes}; add other classes"
        )
    _check_class_counts(splits, classes, min_class_samples, raw)
    fixed = [to_fixed_length(s.series, length, length_method) for s in splits]
    (X_train, X_val, X_test), (mean, std) = standardize(*fixed)
    y_train, y_val, y_test = (encode_labels(s.labels, classes) for s in splits)
    ids_train, ids_val, ids_test = (_sample_ids(s, name) for s, name in zip(splits, SPLITS, strict=True))
    provenance = {
        "source": {**raw.source, "given_splits": raw.given_splits()},
        "length_method": length_method,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "min_class_samples": min_class_samples,
        "test_groups": None if test_groups is None else list(test_groups),
        "val_groups": None if val_groups is None else list(val_groups),
        "fold": fold,
        "seed": seed,
    }
    if split_seed is not None:  # absent otherwise, so a fixed split's record reads as before
        provenance["split_seed"] = split_seed
    return PreparedDataset(
        X_train,
        y_train,
        X_val,
        y_val,
        X_test,
        y_test,
        classes,
        mean,
        std,
        provenance,
        ids_train=ids_train,
        ids_val=ids_val,
        ids_test=ids_test,
        groups={name: _group_names(s) for s, name in zip(splits, SPLITS, strict=True)},
    )


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
    arrays["groups"] = np.array(json.dumps(dataset.groups))
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
        missing = sorted(
            set(_ARRAY_KEYS + ("classes", "mean", "std", "provenance", "groups")) - set(archive.files)
        )
        if missing:
            raise ValueError(f"{path} is not a prepared dataset: missing arrays {missing}")
        arrays = {key: archive[key] for key in _ARRAY_KEYS}
        return PreparedDataset(
            **arrays,
            classes=archive["classes"].tolist(),
            mean=archive["mean"],
            std=archive["std"],
            provenance=json.loads(str(archive["provenance"])),
            groups=json.loads(str(archive["groups"])),
        )
