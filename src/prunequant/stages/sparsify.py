"""The ``sparsify`` stage: magnitude pruning of single weights, fine-tuned with the masks held."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.distill import Teacher
from prunequant.engine import TrainConfig, fingerprint, seed_everything, write_history
from prunequant.io import write_json
from prunequant.prune.unstructured import (
    apply_masks,
    magnitude_masks,
    mask_holder,
    sparsity_record,
    storage_bytes,
)
from prunequant.training import stage_metrics, train_stage

__all__ = ["run_sparse_finetuning"]


def run_sparse_finetuning(
    *,
    baseline_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    method: dict,
    not_prunable: Sequence[str],
    training: dict,
    seed: int,
    device: str,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    record_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    resume_path: str | os.PathLike,
    distillation: Mapping | None = None,
    teacher_path: str | os.PathLike | None = None,
) -> dict:
    """Unstructured magnitude pruning at ``method["rate"]`` sparsity, fine-tuned with masks held.

    Masked weights are set back to zero after every optimizer step, so they stay zero through
    fine-tuning and the saved weights are plainly sparse (the masks are permanent). With
    ``distillation``, the fine-tuning trains against the teacher at ``teacher_path``.
    """
    teacher = Teacher.of(distillation, teacher_path)
    teacher_parts, teacher_files = Teacher.inputs(teacher)
    dataset = load_dataset(dataset_path)
    model, _ = load_model(baseline_path)
    seed_everything(seed)
    masks = magnitude_masks(model, method["rate"], scope=method["scope"], not_prunable=not_prunable)
    apply_masks(model, masks)
    config = TrainConfig(seed=seed, **training)
    result, target = train_stage(
        model,
        dataset,
        config,
        device=device,
        model_path=model_path,
        resume_path=resume_path,
        job_fingerprint=fingerprint(
            method,
            list(not_prunable),
            asdict(config),
            *teacher_parts,
            files=(str(dataset_path), str(baseline_path), *teacher_files),
        ),
        metadata={"sparsity": method},
        after_step=mask_holder(model, masks),
        teacher=teacher,
    )
    write_history(result.history, history_path)
    final, _ = load_model(model_path)
    record = {"method": method, "sparsity": sparsity_record(final), "storage_bytes": storage_bytes(final)}
    write_json(record, record_path)
    metrics = stage_metrics(
        result, config, target, final, nonzero_parameters=record["sparsity"]["nonzero_parameters"]
    )
    write_json(metrics, metrics_path)
    return metrics
