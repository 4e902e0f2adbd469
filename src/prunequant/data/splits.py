"""Train/val/test splitting: keep the splits a source predefines, carve the missing ones.

Carving is stratified by class, or by group (e.g. speaker) when the source has groups, so that no
group appears in two splits. Groups can also be named: ``test_groups`` / ``val_groups`` put exactly
those groups in test / val, and ``fold=k`` (leave-one-group-out) puts the k-th group in test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunequant.data.raw import RawDataset, RawSplit, _take
from prunequant.errors import UserError


def _held_count(n: int, fraction: float) -> int:
    """About ``fraction`` of ``n``, keeping at least one on each side (so 0 when ``n`` is 1)."""
    return min(max(int(fraction * n + 0.5), 1), n - 1)


def _held_by_group(groups: np.ndarray, fraction: float, rng: np.random.Generator, name: str) -> np.ndarray:
    keys = np.unique(groups)
    if len(keys) < 2:
        raise UserError(
            f"data: cannot carve the {name} split by group: only {len(keys)} group(s) {keys.tolist()} left; "
            "add data from more groups, or drop data.audio.group_regex to split by sample"
        )
    held_keys = rng.permutation(keys)[: _held_count(len(keys), fraction)]
    return np.flatnonzero(np.isin(groups, held_keys))


def _held_stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """About ``fraction`` of every class; a class of one sample stays entirely on the kept side."""
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held.append(rng.permutation(members)[: _held_count(len(members), fraction)])
    return np.sort(np.concatenate(held))


def _split_off(
    split: RawSplit, fraction: float, rng: np.random.Generator, name: str
) -> tuple[RawSplit, RawSplit]:
    """Return (rest, held-out) with about ``fraction`` of the samples (or groups) held out."""
    if len(split) < 2:
        raise UserError(
            f"data: cannot carve the {name} split: only {len(split)} sample(s) left; every split must be "
            "non-empty: add more data"
        )
    if split.groups is not None:
        held = _held_by_group(split.groups, fraction, rng, name)
    else:
        # May hold nothing when every class has one sample; the per-class check in prepare_dataset
        # then names the class that is missing, which says more than "empty split".
        held = _held_stratified(split.labels, fraction, rng)
    return _partition(split, held)


def _partition(split: RawSplit, held: np.ndarray) -> tuple[RawSplit, RawSplit]:
    mask = np.zeros(len(split), dtype=bool)
    mask[held] = True
    return _take(split, np.flatnonzero(~mask)), _take(split, np.flatnonzero(mask))


def _split_named_groups(split: RawSplit, names: Sequence[str], key: str) -> tuple[RawSplit, RawSplit]:
    """Return (rest, held-out) where held-out holds exactly the groups ``names`` (config key ``key``)."""
    known = sorted(set(split.groups.tolist()))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UserError(f"config key '{key}': unknown group(s) {unknown}; known groups: {known}")
    if not names:
        raise UserError(f"config key '{key}': names no group; list at least one of {known}")
    if set(names) == set(known):
        raise UserError(
            f"config key '{key}': takes every group left {known}; leave some for the other splits"
        )
    return _partition(split, np.flatnonzero(np.isin(split.groups, list(names))))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise UserError(f"config key 'data.{name}': must lie strictly between 0 and 1, got {value!r}")


def _check_group_choice(
    raw: RawDataset, test_groups: Sequence[str] | None, val_groups: Sequence[str] | None, fold: int | None
) -> list[str] | None:
    """Validate the named-group settings; return the test groups they choose (``fold`` resolved)."""
    chosen = {"data.test_groups": test_groups, "data.val_groups": val_groups, "data.fold": fold}
    for key, value in chosen.items():
        if value is None:
            continue
        if raw.train.groups is None:
            raise UserError(
                f"config key '{key}': the data have no groups; set data.audio.group_regex "
                "(e.g. '(spk\\d+)_') or remove this key"
            )
        if key != "data.val_groups" and raw.test is not None:
            raise UserError(f"config key '{key}': the source already has its own test split; remove this key")
        if key == "data.val_groups" and raw.val is not None:
            raise UserError(f"config key '{key}': the source already has its own val split; remove this key")
    if fold is not None and test_groups is not None:
        raise UserError(
            "config keys 'data.fold' and 'data.test_groups' both choose the test groups; set only one"
        )
    if fold is not None:
        known = sorted(set(raw.train.groups.tolist()))
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < len(known):
            raise UserError(
                f"config key 'data.fold': {fold!r} is not a group index; the data have {len(known)} groups, "
                f"so fold must lie in 0..{len(known) - 1}"
            )
        test_groups = [known[fold]]
    if test_groups is not None and val_groups is not None:
        both = sorted(set(test_groups) & set(val_groups))
        if both:
            raise UserError(
                f"config key 'data.val_groups': groups {both} are also test groups; a group sits in one split"
            )
    return None if test_groups is None else list(test_groups)


def split_dataset(
    raw: RawDataset,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_groups: Sequence[str] | None = None,
    val_groups: Sequence[str] | None = None,
    fold: int | None = None,
    split_seed: int | None = None,
) -> tuple[RawSplit, RawSplit, RawSplit]:
    """Return (train, val, test): keep the splits the source predefines, carve the missing ones.

    Without a given test split, ``test_fraction`` of the data is carved first, then ``val_fraction``
    of the rest. Carving is stratified by class, or by group key when the source has groups, so no
    group appears in two splits. ``test_groups`` / ``val_groups`` put exactly the named groups in
    test / val instead; ``fold=k`` puts the k-th group (0-based, sorted by name) in test, and val
    groups are then drawn from the rest. All randomness comes from ``seed``; with ``split_seed``
    (one split per run), validation is drawn from ``(seed, split_seed)`` instead, so the test split
    stays the same for every run while train and validation differ.
    """
    rng = np.random.default_rng(seed)
    test_groups = _check_group_choice(raw, test_groups, val_groups, fold)
    train, val, test = raw.train, raw.val, raw.test
    if test_groups is not None:
        train, test = _split_named_groups(
            train, test_groups, "data.fold" if fold is not None else "data.test_groups"
        )
    elif test is None:
        _check_fraction("test_fraction", test_fraction)
        train, test = _split_off(train, test_fraction, rng, "test")
    if val_groups is not None:
        train, val = _split_named_groups(train, val_groups, "data.val_groups")
    elif val is None:
        _check_fraction("val_fraction", val_fraction)
        val_rng = rng if split_seed is None else np.random.default_rng((seed, split_seed))
        train, val = _split_off(train, val_fraction, val_rng, "val")
    return train, val, test
