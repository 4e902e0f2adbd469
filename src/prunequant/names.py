"""Block names and their checks, free of torch so the workflow can check config before any job.

Blocks are named ``blocks.<i>`` (their module path in the model); pruning settings such as
``model.not_prunable`` refer to them by that name.
"""

from __future__ import annotations

from collections.abc import Sequence

from prunequant.errors import UserError

__all__ = ["SettingError", "block_names", "not_prunable_problems"]


class SettingError(UserError, ValueError):
    """A bad model or pruning setting: a one-line :class:`UserError` for the workflow, and a
    ``ValueError`` for library callers."""


def block_names(n_blocks: int) -> list[str]:
    """``['blocks.0', ..., 'blocks.<n_blocks-1>']``."""
    return [f"blocks.{index}" for index in range(n_blocks)]


def not_prunable_problems(
    names: Sequence[object], n_blocks: int, *, key: str = "model.not_prunable"
) -> list[str]:
    """One line per entry of ``names`` that names no block of an ``n_blocks``-block model."""
    known = block_names(n_blocks)
    listing = " … ".join(dict.fromkeys([known[0], known[-1]])) if known else "none"
    return [
        f"config key '{key}[{index}]': {name!r} matches no block; blocks are {listing}"
        for index, name in enumerate(names)
        if name not in known
    ]
