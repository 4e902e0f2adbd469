"""The ``from_scratch`` stage: the pruned architecture trained from random initialisation (the
control of "Rethinking the Value of Network Pruning"), or a distilled student of it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from prunequant.stages.train import run_training
from prunequant.training import pruned_widths

__all__ = ["run_from_scratch"]


def run_from_scratch(
    *,
    dataset_path: str | os.PathLike,
    rate: float,
    arch: str,
    blocks: list[dict],
    not_prunable: Sequence[str],
    training: dict,
    seed: int,
    device: str,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    resume_path: str | os.PathLike,
    distillation: Mapping | None = None,
    teacher_path: str | os.PathLike | None = None,
) -> dict:
    """The pruned architecture at ``rate``, trained from random initialisation like the baseline;
    with ``distillation``, against the teacher at ``teacher_path`` (a distilled student)."""
    return run_training(
        distillation=distillation,
        teacher_path=teacher_path,
        dataset_path=dataset_path,
        training=training,
        seed=seed,
        device=device,
        model_path=model_path,
        history_path=history_path,
        metrics_path=metrics_path,
        resume_path=resume_path,
        blocks=pruned_widths(blocks, rate, not_prunable),
        arch=arch,
    )
