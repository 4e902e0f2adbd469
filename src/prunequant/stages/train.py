"""The ``train_baseline`` stage (and each baseline-tuning candidate): a model trained from its
blocks, or fine-tuned from a checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.distill import Teacher
from prunequant.engine import TrainConfig, fingerprint, seed_everything, write_history
from prunequant.io import write_json
from prunequant.training import baseline_model, stage_metrics, train_stage

__all__ = ["run_training"]


def run_training(
    *,
    dataset_path: str | os.PathLike,
    training: dict,
    seed: int,
    device: str,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    resume_path: str | os.PathLike,
    blocks: list[dict] | None = None,
    arch: str = "separable",
    init_model_path: str | os.PathLike | None = None,
    distillation: Mapping | None = None,
    teacher_path: str | os.PathLike | None = None,
) -> dict:
    """Train a new model (``blocks``) or continue from a checkpoint (``init_model_path``).

    With ``distillation`` settings the model is trained against the teacher at ``teacher_path``
    (:mod:`prunequant.distill`). Writes the best checkpoint, the per-epoch history CSV and a
    metrics JSON; returns the metrics.
    """
    teacher = Teacher.of(distillation, teacher_path)
    teacher_parts, teacher_files = Teacher.inputs(teacher)
    if (blocks is None) == (init_model_path is None):
        raise ValueError("give exactly one of blocks (train from scratch) or init_model_path (fine-tune)")
    config = TrainConfig(seed=seed, **training)
    dataset = load_dataset(dataset_path)
    n_channels, length = dataset.X_train.shape[1:]
    if blocks is not None:
        model = baseline_model(blocks, n_channels, len(dataset.classes), length, seed, arch)
        inputs = (str(dataset_path),)
    else:
        model, _ = load_model(init_model_path)
        seed_everything(seed)
        inputs = (str(dataset_path), str(init_model_path))
    result, target = train_stage(
        model,
        dataset,
        config,
        device=device,
        model_path=model_path,
        resume_path=resume_path,
        job_fingerprint=fingerprint(
            asdict(config), blocks, arch, *teacher_parts, files=inputs + teacher_files
        ),
        metadata={},
        teacher=teacher,
    )
    write_history(result.history, history_path)
    metrics = stage_metrics(result, config, target, model)
    write_json(metrics, metrics_path)
    return metrics
