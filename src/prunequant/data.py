"""The data stage: load a labelled time-series source, split it, fix its length, standardise it.

Four sources feed one pipeline: a UEA/UCR set bundled with sktime, ``.ts`` files, an ``.npz``
archive, or a folder of ``.wav`` files turned into MFCCs. Each loader returns a :class:`RawDataset`
of variable-length float32 series ``[C, T_i]`` with string labels; :func:`prepare_dataset` turns
it into fixed-shape arrays ``[N, C, L]`` with integer labels, and :func:`save_dataset` writes them
with a metadata JSON that says where they came from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BUNDLED_DATASETS",
    "SOURCES",
    "LENGTH_METHODS",
    "RawSplit",
    "RawDataset",
    "AudioOptions",
    "PreparedDataset",
    "load_bundled",
    "load_ts",
    "load_npz",
    "load_audio_folder",
    "to_fixed_length",
    "split_dataset",
    "class_names",
    "encode_labels",
    "standardize",
    "prepare_dataset",
    "save_dataset",
    "load_dataset",
]

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
SOURCES = ("bundled", "npz", "ts", "audio")
LENGTH_METHODS = ("resample", "pad_crop")
SPLITS = ("train", "val", "test")
_ARRAY_KEYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


# --------------------------------------------------------------------------- raw data


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


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioOptions:
    """How a folder of ``.wav`` files becomes labelled MFCC series."""

    root: str  # folder searched recursively for .wav files
    label_from: str  # "folder": parent folder relative to root; "regex": label_regex on the relative path
    sample_rate: int  # Hz; files are resampled to it
    n_mfcc: int  # MFCC coefficients = channels of the series
    hop_length: int  # samples between frames
    n_fft: int  # samples per FFT window
    label_regex: str | None = None  # first capture group (or group "label") is the label
    group_regex: str | None = None  # first capture group is a group key, e.g. a speaker id

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "AudioOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown audio options {unknown}; known: {sorted(known)}")
        missing = sorted(f.name for f in fields(cls) if f.default is MISSING and f.name not in options)
        if missing:
            raise ValueError(f"missing audio options {missing}")
        return cls(**options)


def _compile(pattern: str | None, name: str) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{name} {pattern!r} is not a valid regular expression: {err}") from err
    if compiled.groups < 1:
        raise ValueError(f"{name} {pattern!r} needs a capture group, e.g. '(spk\\d+)_'")
    return compiled


def _capture(pattern: re.Pattern, text: str, name: str, group: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"{name} {pattern.pattern!r} does not match file {text!r}")
    value = match.group(group) if group in pattern.groupindex else match.group(1)
    if not value:
        raise ValueError(f"{name} {pattern.pattern!r} captured nothing in file {text!r}")
    return value


def _wav_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ValueError(f"audio folder not found: {root}")
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise ValueError(f"no .wav files found under {root}")
    return files


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _audio_label(rel: str, label_from: str, label_pattern: re.Pattern | None) -> str:
    if label_pattern is not None:
        return _capture(label_pattern, rel, "label_regex", "label")
    folder, _, _ = rel.rpartition("/")
    if not folder:
        raise ValueError(
            f"file {rel!r} lies directly in the audio root, so it has no class folder: "
            "move it into a folder named after its class, or use label_from='regex'"
        )
    return folder


def _mfcc(path: Path, *, sample_rate: int, n_mfcc: int, hop_length: int, n_fft: int) -> np.ndarray:
    import librosa

    try:
        signal, sr = librosa.load(path, sr=sample_rate, mono=True)
    except Exception as err:  # librosa surfaces decoder-specific exception types
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if signal.size == 0:
        raise ValueError(f"audio file {path} is empty")
    features = librosa.feature.mfcc(y=signal, sr=sr, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft)
    return features.astype(np.float32)


def load_audio_folder(
    root: str | os.PathLike,
    *,
    label_from: str,
    label_regex: str | None = None,
    group_regex: str | None = None,
    sample_rate: int,
    n_mfcc: int,
    hop_length: int,
    n_fft: int,
) -> RawDataset:
    """Every ``.wav`` under ``root`` (sorted by relative path) as an MFCC series ``[n_mfcc, frames]``."""
    if label_from not in ("folder", "regex"):
        raise ValueError(f"label_from must be 'folder' or 'regex', got {label_from!r}")
    if label_from == "regex" and label_regex is None:
        raise ValueError("label_from='regex' needs label_regex, e.g. '^(\\w+)/'")
    _check_positive(sample_rate=sample_rate, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft)
    label_pattern = _compile(label_regex, "label_regex") if label_from == "regex" else None
    group_pattern = _compile(group_regex, "group_regex")
    root = Path(root)
    series, labels, groups = [], [], []
    for path in _wav_files(root):
        rel = path.relative_to(root).as_posix()
        labels.append(_audio_label(rel, label_from, label_pattern))
        if group_pattern is not None:
            groups.append(_capture(group_pattern, rel, "group_regex", "group"))
        series.append(_mfcc(path, sample_rate=sample_rate, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft))
    train = _raw_split(series, labels, groups if group_pattern is not None else None, where=str(root))
    options = AudioOptions(
        root=str(root),
        label_from=label_from,
        sample_rate=sample_rate,
        n_mfcc=n_mfcc,
        hop_length=hop_length,
        n_fft=n_fft,
        label_regex=label_regex,
        group_regex=group_regex,
    )
    return RawDataset(train=train, source={"kind": "audio", **asdict(options)})


# --------------------------------------------------------------------------- fixed length


def _resample(x: np.ndarray, length: int) -> np.ndarray:
    # Linear interpolation at evenly spaced positions keeps both end points of every series.
    positions = np.linspace(0.0, x.shape[1] - 1, length)
    lo = np.floor(positions).astype(np.int64)
    hi = np.minimum(lo + 1, x.shape[1] - 1)
    weight = (positions - lo).astype(np.float64)
    return x[:, lo] * (1.0 - weight) + x[:, hi] * weight


def _pad_crop(x: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((x.shape[0], length), dtype=np.float32)
    keep = min(length, x.shape[1])
    out[:, :keep] = x[:, :keep]
    return out


def _check_length_args(length: int, method: str) -> None:
    if method not in LENGTH_METHODS:
        raise ValueError(f"length_method must be one of {LENGTH_METHODS}, got {method!r}")
    _check_positive(length=length)


def to_fixed_length(series: Sequence[np.ndarray], length: int, method: str) -> np.ndarray:
    """Stack ``[C, T_i]`` series into float32 ``[N, C, length]`` by resampling or zero-pad/crop at the end."""
    _check_length_args(length, method)
    if len(series) == 0:
        raise ValueError("no series to stack")
    channels = {np.shape(s)[0] for s in series}
    if len(channels) != 1:
        raise ValueError(f"series have different channel counts {sorted(channels)}; all must share one")
    fix = _resample if method == "resample" else _pad_crop
    return np.stack([fix(np.asarray(s, dtype=np.float64), length) for s in series]).astype(np.float32)


# --------------------------------------------------------------------------- splitting


def _held_count(n: int, fraction: float) -> int:
    return min(max(int(fraction * n + 0.5), 1), n - 1)


def _held_by_group(groups: np.ndarray, fraction: float, rng: np.random.Generator, name: str) -> np.ndarray:
    keys = np.unique(groups)
    if len(keys) < 2:
        raise ValueError(
            f"cannot carve the {name} split by group: only {len(keys)} group(s) {keys.tolist()} left; "
            "add data from more groups, or drop group_regex to split by sample"
        )
    held_keys = rng.permutation(keys)[: _held_count(len(keys), fraction)]
    return np.flatnonzero(np.isin(groups, held_keys))


def _held_stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        # A singleton class cannot sit on both sides; a plain shuffle keeps the split usable.
        return np.sort(rng.permutation(len(labels))[: _held_count(len(labels), fraction)])
    held = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        held.append(rng.permutation(members)[: _held_count(len(members), fraction)])
    return np.sort(np.concatenate(held))


def _split_off(
    split: RawSplit, fraction: float, rng: np.random.Generator, name: str
) -> tuple[RawSplit, RawSplit]:
    """Return (rest, held-out) with about ``fraction`` of the samples (or groups) held out."""
    if len(split) < 2:
        raise ValueError(
            f"cannot carve the {name} split: only {len(split)} sample(s) left; every split must be non-empty"
        )
    if split.groups is not None:
        held = _held_by_group(split.groups, fraction, rng, name)
    else:
        held = _held_stratified(split.labels, fraction, rng)
    mask = np.zeros(len(split), dtype=bool)
    mask[held] = True
    return _take(split, np.flatnonzero(~mask)), _take(split, held)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def split_dataset(
    raw: RawDataset, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[RawSplit, RawSplit, RawSplit]:
    """Return (train, val, test): keep the splits the source predefines, carve the missing ones.

    Without a given test split, ``test_fraction`` of the data is carved first, then ``val_fraction``
    of the rest. Carving is stratified by class, or by group key when the source has groups, so no
    group appears in two splits. All randomness comes from ``seed``.
    """
    rng = np.random.default_rng(seed)
    train, val, test = raw.train, raw.val, raw.test
    if test is None:
        _check_fraction("test_fraction", test_fraction)
        train, test = _split_off(train, test_fraction, rng, "test")
    if val is None:
        _check_fraction("val_fraction", val_fraction)
        train, val = _split_off(train, val_fraction, rng, "val")
    return train, val, test


# --------------------------------------------------------------------------- labels and scaling


def _label_key(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def class_names(*labels: np.ndarray) -> list[str]:
    """Sorted unique labels over all given arrays; numeric labels sort by value ("2" before "10")."""
    unique = set().union(*(np.asarray(a).astype(str).tolist() for a in labels))
    return sorted(unique, key=_label_key)


def encode_labels(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Map string labels to int64 indices into ``classes``."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(np.asarray(labels).astype(str).tolist()) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.array([index[label] for label in np.asarray(labels).astype(str)], dtype=np.int64)


def standardize(
    train: np.ndarray, *others: np.ndarray
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, np.ndarray]]:
    """Scale every array with per-channel mean/std taken from ``train`` only (over samples and time).

    Returns ``((train, *others), (mean, std))``; a constant channel keeps std 1 instead of dividing by 0.
    """
    arrays = (train, *others)
    for i, array in enumerate(arrays):
        if array.ndim != 3 or array.shape[1] != train.shape[1]:
            raise ValueError(f"array {i} has shape {array.shape}; expected [N, {train.shape[1]}, L]")
    mean = train.mean(axis=(0, 2), dtype=np.float64)
    std = train.std(axis=(0, 2), dtype=np.float64)
    # Rounding leaves a constant channel with a tiny nonzero std; treat it as exactly constant.
    std = np.where(std <= np.finfo(np.float32).eps * np.abs(mean), 1.0, std)
    scaled = tuple(((a - mean[None, :, None]) / std[None, :, None]).astype(np.float32) for a in arrays)
    return scaled, (mean.astype(np.float32), std.astype(np.float32))


# --------------------------------------------------------------------------- the prepared dataset


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
            counts[name] = {label: int(n) for label, n in zip(self.classes, per_class)}
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
