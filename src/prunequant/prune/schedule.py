"""Pruning schedules: one shot, or K steps towards the final rate with fine-tuning between them.

An iterative schedule removes channels in K steps; after step k the model has lost the
cumulative rate r_k of its ORIGINAL channels, so that after step K it has exactly the width
one-shot pruning at the final rate gives. Both schedules spend the same total fine-tuning
epochs: one-shot all of them after its single step, iterative split over its steps.
"""

from __future__ import annotations

from collections.abc import Mapping

from prunequant.names import SettingError
from prunequant.prune.checks import check_choice, check_fraction
from prunequant.prune.structured import n_channels_to_remove

__all__ = [
    "SPACINGS",
    "iterative_rates",
    "split_epochs",
    "channels_to_remove_at_step",
    "iterative_step_rates",
]

SPACINGS = ("linear", "cubic")


def iterative_rates(final_rate: float, steps: int, spacing: str) -> list[float]:
    """Cumulative target rate after each of ``steps`` steps; the last is ``final_rate``.

    ``linear``: r_k = r_f·k/K. ``cubic`` (automated gradual pruning, Zhu & Gupta 2017):
    r_k = r_f·(1 − (1 − k/K)³), large steps first while the network has redundancy to spare.
    """
    check_fraction("final prune rate", final_rate)
    check_choice("schedule spacing", spacing, SPACINGS)
    if steps < 1:
        raise SettingError(f"steps must be at least 1, got {steps}")
    if spacing == "linear":
        rates = [final_rate * k / steps for k in range(1, steps + 1)]
    else:
        rates = [final_rate * (1 - (1 - k / steps) ** 3) for k in range(1, steps + 1)]
    rates[-1] = final_rate  # exact, whatever the float arithmetic did
    return rates


def split_epochs(total: int, steps: int) -> list[int]:
    """``total`` epochs over ``steps`` steps as evenly as possible, the earlier steps taking the rest."""
    if steps < 1 or total < 0:
        raise SettingError(f"need steps >= 1 and total >= 0 epochs, got steps={steps}, total={total}")
    base, extra = divmod(total, steps)
    return [base + (1 if k < extra else 0) for k in range(steps)]


def channels_to_remove_at_step(
    original: int, current: int, cumulative_rate: float, *, min_channels: int = 1
) -> int:
    """Channels to remove now from a block of ``current`` channels that had ``original`` before pruning.

    The target is the width one-shot pruning of the original block at ``cumulative_rate`` gives
    (same rounding and floor), so the last step lands exactly on the one-shot width.
    """
    check_fraction("cumulative prune rate", cumulative_rate)
    n_remove, _ = n_channels_to_remove(original, cumulative_rate, min_channels)
    return max(current - (original - n_remove), 0)


def iterative_step_rates(
    original_widths: Mapping[str, int],
    current_widths: Mapping[str, int],
    cumulative_rate: float,
    *,
    min_channels: int = 1,
) -> dict[str, float]:
    """Per-block rates to pass as ``prune_structured(rate=...)`` (scope ``layer``) for one step.

    Each rate is count/current, which that function rounds back to exactly ``count``.
    """
    return {
        name: channels_to_remove_at_step(
            original_widths[name], current, cumulative_rate, min_channels=min_channels
        )
        / current
        for name, current in current_widths.items()
    }
