"""The training stage shared by baseline training and fine-tuning."""

from __future__ import annotations

import os
from dataclasses import asdict

import torch

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.engine import TrainConfig, fingerprint, pick_device, seed_everything, train, write_history
from prunequant.jobs import write_json
from prunequant.model import BlockSpec, ModelSpec, SeparableCNN, build_model

__all__ = ["baseline_model", "run_training"]


def baseline_model(
    blocks: list[dict], n_channels: int, n_classes: int, length: int, seed: int
) -> SeparableCNN:
    """A freshly initialised reference model sized for the data."""
    spec = ModelSpec(
        in_channels=n_channels, n_classes=n_classes, blocks=tuple(BlockSpec(**b) for b in blocks)
    )
    spec.check_input_length(length)
    seed_everything(seed)
    return build_model(spec)


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
    init_model_path: str | os.PathLike | None = None,
) -> dict:
    """Train a new model (``blocks``) or continue from a checkpoint (``init_model_path``).

    Writes the best checkpoint, the per-epoch history CSV and a metrics JSON;
    returns the metrics.
    """
    if (blocks is None) == (init_model_path is None):
        raise ValueError("give exactly one of blocks (train from scratch) or init_model_path (fine-tune)")
    config = TrainConfig(seed=seed, **training)
    dataset = load_dataset(dataset_path)
    n_channels, length = dataset.X_train.shape[1:]
    if blocks is not None:
        model = baseline_model(blocks, n_channels, len(dataset.classes), length, seed)
        inputs = (str(dataset_path),)
    else:
        model, _ = load_model(init_model_path)
        seed_everything(seed)
        inputs = (str(dataset_path), str(init_model_path))
    target = pick_device(device)
    print(f"Training on {target} ({torch.get_num_threads()} CPU threads)")
    job_fingerprint = fingerprint(asdict(config), blocks, files=inputs)
    result = train(
        model,
        (torch.from_numpy(dataset.X_train), torch.from_numpy(dataset.y_train)),
        (torch.from_numpy(dataset.X_val), torch.from_numpy(dataset.y_val)),
        config,
        device=target,
        best_path=model_path,
        resume_path=resume_path,
        job_fingerprint=job_fingerprint,
        checkpoint_metadata={"training": asdict(config), "classes": list(dataset.classes)},
    )
    write_history(result.history, history_path)
    metrics = {
        "best_val_accuracy": result.best_accuracy,
        "best_epoch": result.best_epoch,
        "epochs": config.epochs,
        "resumed_from_epoch": result.resumed_from_epoch,
        "device": str(target),
        "train_seconds": sum(record.train_time for record in result.history),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    write_json(metrics, metrics_path)
    return metrics
