"""Array transforms: series to a fixed length, string labels to class indices, per-channel scaling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunequant.data.raw import _check_positive
from prunequant.errors import UserError

LENGTH_METHODS = ("resample", "pad_crop")


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
        raise UserError(f"config key 'data.length_method': must be one of {LENGTH_METHODS}, got {method!r}")
    _check_positive(length=length)


def to_fixed_length(series: Sequence[np.ndarray], length: int, method: str) -> np.ndarray:
    """Stack ``[C, T_i]`` series into float32 ``[N, C, length]`` by resampling or zero-pad/crop at the end."""
    _check_length_args(length, method)
    if len(series) == 0:
        raise ValueError("no series to stack")
    channels = {np.shape(s)[0] for s in series}
    if len(channels) != 1:
        raise UserError(
            f"data: series have different channel counts {sorted(channels)}; "
            "give every sample the same channels"
        )
    fix = _resample if method == "resample" else _pad_crop
    return np.stack([fix(np.asarray(s, dtype=np.float64), length) for s in series]).astype(np.float32)


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
