"""Train/val/test splitting: keep the splits a source predefines, carve the missing ones."""

from __future__ import annotations

import numpy as np

from prunequant.data.raw import RawDataset, RawSplit, _take


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
