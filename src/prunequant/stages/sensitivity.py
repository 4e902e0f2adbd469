"""The ``sensitivity`` stage: each block pruned alone over a grid of rates, no fine-tuning."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.engine import seed_everything
from prunequant.prune.sensitivity import block_sensitivity
from prunequant.training import tensors_of

__all__ = ["run_sensitivity"]


def run_sensitivity(
    *,
    baseline_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    criterion: str,
    rates: Sequence[float],
    not_prunable: Sequence[str],
    seed: int,
    curves_path: str | os.PathLike,
) -> list[dict]:
    """Validation accuracy of the baseline with one block pruned at a time, over ``rates``.

    No fine-tuning: the curves say how much each block's channels matter as trained, which
    is what per-block rates are derived from. Only validation data is used.
    """
    dataset = load_dataset(dataset_path)
    model, _ = load_model(baseline_path)
    seed_everything(seed)
    rows = block_sensitivity(
        model,
        val_data=tensors_of(dataset, "val"),
        rates=list(rates),
        criterion=criterion,
        seed=seed,
        data=tensors_of(dataset, "train"),
        not_prunable=not_prunable,
    )
    path = Path(curves_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["block", "rate", "val_accuracy", "channels_after"])
        writer.writeheader()
        writer.writerows({key: row[key] for key in writer.fieldnames} for row in rows)
    return rows
