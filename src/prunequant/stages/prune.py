"""The ``prune`` stage: channels removed by a criterion, scope and schedule (or per-block rates
from the sensitivity curves), then fine-tuned."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from torch import nn

from prunequant.checkpoint import load_model, save_model
from prunequant.data import load_dataset
from prunequant.distill import Teacher
from prunequant.engine import EpochRecord, TrainConfig, fingerprint, seed_everything, write_history
from prunequant.io import write_json
from prunequant.prune.schedule import (
    channels_to_remove_at_step,
    iterative_rates,
    iterative_step_rates,
    split_epochs,
)
from prunequant.prune.sensitivity import rates_within_drop
from prunequant.prune.structured import prune_structured
from prunequant.training import tensors_of, train_stage

__all__ = ["run_structured_pruning"]


def _sensitivity_rates(curves_path: str | os.PathLike, max_drop_pp: float) -> dict[str, float]:
    with Path(curves_path).open(newline="") as handle:
        rows = [
            {
                "block": row["block"],
                "rate": float(row["rate"]),
                "val_accuracy": float(row["val_accuracy"]),
                "channels_after": int(row["channels_after"]),
            }
            for row in csv.DictReader(handle)
        ]
    return rates_within_drop(rows, max_drop_pp=max_drop_pp)


def _step_rates(total_rate, widths_now: dict[str, int], widths_start: dict[str, int], scope: str):
    """The rate to apply to the CURRENT model so that exactly the cumulative target is kept.

    Targets are counted against the original widths with the rounding of one-shot pruning
    (:mod:`prunequant.prune.schedule`), so the last step of an iterative schedule lands on
    the one-shot channel count. Only the prunable blocks are given (``widths_*``); global
    scope counts their channels together. Per-block rates (a mapping, from sensitivity
    curves) are one step from the unpruned model and apply as they are.
    """
    if isinstance(total_rate, dict):
        return {name: total_rate[name] for name in widths_now}
    if scope == "global":
        now = sum(widths_now.values())
        return channels_to_remove_at_step(sum(widths_start.values()), now, total_rate) / now
    return iterative_step_rates(widths_start, widths_now, total_rate)


def _widths(model: nn.Module, not_prunable: Sequence[str] = ()) -> dict[str, int]:
    """Pointwise output channels of every block that may be pruned."""
    return {
        f"blocks.{index}": block.pointwise.out_channels
        for index, block in enumerate(model.blocks)
        if f"blocks.{index}" not in not_prunable
    }


def run_structured_pruning(
    *,
    baseline_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    method: dict,
    min_channels: int,
    not_prunable: Sequence[str],
    training: dict,
    seed: int,
    device: str,
    model_path: str | os.PathLike,
    history_path: str | os.PathLike,
    record_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    resume_dir: str | os.PathLike,
    sensitivity_path: str | os.PathLike | None = None,
    distillation: Mapping | None = None,
    teacher_path: str | os.PathLike | None = None,
) -> dict:
    """Prune channels by ``method`` (criterion, scope, schedule, rate) and fine-tune.

    One-shot prunes once and fine-tunes for ``training["epochs"]``; an iterative schedule
    reaches the same final channel count in ``steps`` cuts with fine-tuning between them,
    spending the same epochs in total, so the two differ only in how they cut.
    Sensitivity-derived methods prune each block at the largest rate whose validation drop
    (measured without fine-tuning) stays within ``max_drop_pp``. With ``distillation``, every
    fine-tuning step trains against the teacher at ``teacher_path``.
    """
    teacher = Teacher.of(distillation, teacher_path)
    teacher_parts, teacher_files = Teacher.inputs(teacher)
    dataset = load_dataset(dataset_path)
    model, _ = load_model(baseline_path)
    seed_everything(seed)
    train_data = tensors_of(dataset, "train")
    if method["family"] == "sensitivity":
        final_rate = _sensitivity_rates(sensitivity_path, method["max_drop_pp"])
        for name in not_prunable:
            final_rate[name] = 0.0
    else:
        final_rate = method["rate"]
    steps = method["steps"] if method["schedule"] == "iterative" else 1
    if isinstance(final_rate, dict):
        cumulative = [final_rate]
    elif steps == 1:
        cumulative = [final_rate]
    else:
        cumulative = iterative_rates(final_rate, steps, method["spacing"])
    epochs = split_epochs(training["epochs"], len(cumulative))
    widths_start = _widths(model, not_prunable)
    resume_dir = Path(resume_dir)
    job_fingerprint = fingerprint(
        method,
        min_channels,
        list(not_prunable),
        training,
        seed,
        *teacher_parts,
        files=(str(dataset_path), str(baseline_path), *teacher_files),
    )
    history: list[EpochRecord] = []
    step_records = []
    parameters_before = sum(p.numel() for p in model.parameters())
    result = target = None
    for step, (rate, step_epochs) in enumerate(zip(cumulative, epochs, strict=True), start=1):
        last = step == len(cumulative)
        done = resume_dir / f"step{step}-done.pt"
        if not last and done.exists():
            # Finished before the job was killed: its pruned, fine-tuned weights are kept.
            model, metadata = load_model(done)
            step_records.append(metadata["step_record"])
            history += _renumbered(_read_history(done.with_suffix(".csv")), after=len(history))
            continue
        model, record = _prune_step(
            model, rate, widths_start, method, seed + step, train_data, not_prunable, min_channels
        )
        record = dict(record, step=step, cumulative_rate=rate, epochs=step_epochs)
        step_records.append(record)
        print(f"Step {step}/{len(cumulative)}: widths {_widths(model)}, fine-tuning {step_epochs} epochs")
        if step_epochs == 0:
            continue
        result, target = train_stage(
            model,
            dataset,
            TrainConfig(seed=seed + step, **dict(training, epochs=step_epochs)),
            device=device,
            model_path=model_path if last else done,
            resume_path=resume_dir / f"step{step}.pt",
            job_fingerprint=f"{job_fingerprint}-step{step}",
            metadata={"pruning": method, "step_record": record},
            teacher=teacher,
        )
        history += _renumbered(result.history, after=len(history))
        if not last:
            write_history(result.history, done.with_suffix(".csv"))
            model, _ = load_model(done)
    if not Path(model_path).exists():  # the last step had no epochs to train
        save_model(model, model_path, {"pruning": method})
    for leftover in resume_dir.glob("step*-done.*"):
        leftover.unlink()
    write_history(history, history_path)
    final, _ = load_model(model_path)
    pruning = {
        "method": method,
        "final_rate": final_rate,
        "steps": step_records,
        "epochs_per_step": epochs,
        "widths_before": widths_start,
        "widths_after": _widths(final),
        "parameters_before": parameters_before,
        "parameters_after": sum(p.numel() for p in final.parameters()),
    }
    write_json(pruning, record_path)
    metrics = {
        "best_val_accuracy": result.best_accuracy if result else None,
        "best_epoch": result.best_epoch if result else None,
        "epochs": sum(epochs),
        "device": str(target) if target else "cpu",
        "train_seconds": sum(record.train_time for record in history),
        "parameters": pruning["parameters_after"],
    }
    write_json(metrics, metrics_path)
    return metrics


def _prune_step(model, rate, widths_start, method, seed, train_data, not_prunable, min_channels):
    step_rate = _step_rates(rate, _widths(model, not_prunable), widths_start, method["scope"])
    values = step_rate.values() if isinstance(step_rate, dict) else [step_rate]
    if all(value <= 0 for value in values):
        return model, {"note": "no channel to remove at this step", "blocks": []}
    return prune_structured(
        model,
        rate=step_rate,
        criterion=method["criterion"],
        scope=method["scope"],
        seed=seed,
        data=train_data,
        not_prunable=not_prunable,
        min_channels=min_channels,
    )


def _renumbered(records: list[EpochRecord], *, after: int) -> list[EpochRecord]:
    """Epochs of one fine-tuning step, numbered on from the steps before it."""
    return [replace(record, epoch=after + index) for index, record in enumerate(records, start=1)]


def _read_history(path: Path) -> list[EpochRecord]:
    with path.open(newline="") as handle:
        return [
            EpochRecord(**{key: int(value) if key == "epoch" else float(value) for key, value in row.items()})
            for row in csv.DictReader(handle)
        ]
