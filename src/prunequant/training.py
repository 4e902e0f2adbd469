"""What the training stages share: the reference model, the pruned widths of the from-scratch
control, and one call that trains a stage's model (resumable, best on validation, a teacher when
the stage distils) and the metrics it records.

The stages themselves are :mod:`prunequant.stages`, one module per workflow rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict

import torch
from torch import nn

from prunequant.data import PreparedDataset
from prunequant.distill import Teacher
from prunequant.engine import TrainConfig, pick_device, seed_everything, train
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.prune.structured import n_channels_to_remove

__all__ = ["baseline_model", "pruned_widths", "stage_metrics", "tensors_of", "train_stage"]


def baseline_model(
    blocks: list[dict], n_channels: int, n_classes: int, length: int, seed: int, arch: str = "separable"
) -> nn.Module:
    """A freshly initialised reference model sized for the data."""
    spec = ModelSpec(
        in_channels=n_channels,
        n_classes=n_classes,
        blocks=tuple(BlockSpec(**b) for b in blocks),
        arch=arch,
    )
    spec.check_input_length(length)
    seed_everything(seed)
    return build_model(spec)


def pruned_widths(blocks: list[dict], rate: float, not_prunable: Sequence[str] = ()) -> list[dict]:
    """Block settings after layer-wise pruning at ``rate``: the from-scratch control's architecture.

    Uses the rounding of layer-wise pruning (round half up, at least one channel kept), so the
    control has exactly the widths of the pruned models it is compared with.
    """
    widths = []
    for index, block in enumerate(blocks):
        width = block["width"]
        if f"blocks.{index}" not in not_prunable:
            width -= n_channels_to_remove(width, rate, min_channels=1)[0]
        widths.append(dict(block, width=width))
    return widths


def tensors_of(dataset: PreparedDataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = dataset.split(split)
    return torch.from_numpy(x), torch.from_numpy(y)


def train_stage(
    model: nn.Module,
    dataset: PreparedDataset,
    config: TrainConfig,
    *,
    device: str,
    model_path: str | os.PathLike,
    resume_path: str | os.PathLike,
    job_fingerprint: str,
    metadata: dict,
    after_step: Callable[[], None] | None = None,
    teacher: Teacher | None = None,
):
    target = pick_device(device)
    print(f"Training on {target} ({torch.get_num_threads()} CPU threads)")
    train_data = tensors_of(dataset, "train")
    objective = None
    if teacher is not None:
        objective = teacher.objective(train_data[0], device=target)
        metadata = dict(metadata, distillation=asdict(teacher.distillation))
    result = train(
        model,
        train_data,
        tensors_of(dataset, "val"),
        config,
        device=target,
        best_path=model_path,
        resume_path=resume_path,
        job_fingerprint=job_fingerprint,
        checkpoint_metadata=dict(metadata, training=asdict(config), classes=list(dataset.classes)),
        after_step=after_step,
        objective=objective,
    )
    return result, target


def stage_metrics(result, config: TrainConfig, target, model: nn.Module, **extra) -> dict:
    return {
        "best_val_accuracy": result.best_accuracy,
        "best_epoch": result.best_epoch,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "resumed_from_epoch": result.resumed_from_epoch,
        "device": str(target),
        "train_seconds": sum(record.train_time for record in result.history),
        "parameters": sum(p.numel() for p in model.parameters()),
        **extra,
    }
