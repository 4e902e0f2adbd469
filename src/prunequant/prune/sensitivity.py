"""Sensitivity analysis: prune one block at a time, without fine-tuning, and watch validation accuracy.

Each block gets one curve (accuracy against its own rate, every other block whole); the
largest rate per block that stays within an accuracy drop gives per-block rates that
``prune_structured(rate=...)`` takes directly. In the residual CNN, blocks joined by identity
skips share their channels, so pruning one of them prunes the whole channel group.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from prunequant.engine import evaluate
from prunequant.names import SettingError
from prunequant.prune.checks import check_fraction, check_not_prunable
from prunequant.prune.criteria import channel_scores
from prunequant.prune.structured import _prune_with_scores, block_widths

__all__ = ["block_sensitivity", "rates_within_drop"]


def block_sensitivity(
    model: nn.Module,
    *,
    val_data: tuple[torch.Tensor, torch.Tensor],
    rates: Sequence[float],
    criterion: str,
    seed: int,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    not_prunable: Sequence[str] = (),
    batch_size: int = 256,
) -> list[dict]:
    """Rows ``{block, rate, val_accuracy, channels_after}``, one per prunable block and rate.

    A rate-0 row (the unpruned accuracy) opens every block's curve. Scores are computed once
    on the unpruned model, so every point ranks channels the same way.
    """
    for rate in rates:
        check_fraction("sensitivity rate", rate, allow_zero=True)
    widths = block_widths(model)
    check_not_prunable(not_prunable, len(widths))
    model = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    scores = channel_scores(model, criterion, data=data, seed=seed)
    x_val, y_val = (t.cpu() for t in val_data)
    _, baseline, _ = evaluate(model, x_val, y_val, batch_size=batch_size)
    rows = []
    for block, width in widths.items():
        if block in not_prunable:
            continue
        rows.append({"block": block, "rate": 0.0, "val_accuracy": baseline, "channels_after": width})
        for rate in sorted({float(r) for r in rates if r > 0}):
            pruned, record = _prune_with_scores(
                model, scores, rate={block: rate}, scope="layer", not_prunable=not_prunable, min_channels=1
            )
            _, accuracy, _ = evaluate(pruned, x_val, y_val, batch_size=batch_size)
            after = next(row["channels_after"] for row in record["blocks"] if row["block"] == block)
            rows.append({"block": block, "rate": rate, "val_accuracy": accuracy, "channels_after": after})
    return rows


def rates_within_drop(rows: Sequence[dict], *, max_drop_pp: float) -> dict[str, float]:
    """Block → largest rate whose accuracy is within ``max_drop_pp`` points of its rate-0 accuracy.

    0.0 (keep the block whole) when no pruned point stays within the drop.
    """
    if max_drop_pp < 0:
        raise SettingError(f"max_drop_pp must be >= 0, got {max_drop_pp}")
    blocks = list(dict.fromkeys(row["block"] for row in rows))
    result = {}
    for block in blocks:
        curve = [row for row in rows if row["block"] == block]
        unpruned = [row["val_accuracy"] for row in curve if row["rate"] == 0]
        if not unpruned:
            raise SettingError(f"sensitivity rows of {block} have no rate-0 (unpruned) row")
        floor = unpruned[0] - max_drop_pp
        within = [row["rate"] for row in curve if row["val_accuracy"] >= floor]
        result[block] = max(within)
    return result
