"""Checks of pruning settings: each bad value raises a one-line SettingError (a ValueError) naming it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prunequant.names import SettingError, not_prunable_problems

__all__ = ["check_choice", "check_fraction", "check_not_prunable"]


def check_choice(setting: str, value: object, known: Iterable[str]) -> None:
    known = sorted(known)
    if value not in known:
        raise SettingError(f"{setting} {value!r} is not known; use one of {known}")


def check_fraction(setting: str, value: float, *, allow_zero: bool = False) -> None:
    """``value`` must lie in (0, 1), or [0, 1) with ``allow_zero``."""
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (low_ok and value < 1.0):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise SettingError(f"{setting} must be in {interval}, got {value}")


def check_not_prunable(names: Sequence[str], n_blocks: int) -> None:
    problems = not_prunable_problems(names, n_blocks, key="not_prunable")
    if problems:
        raise SettingError("; ".join(problems))
