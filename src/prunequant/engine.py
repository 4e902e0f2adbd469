"""Training and evaluation loops.

Batches are sliced from tensors that live on the training device: this model
is so small that a DataLoader's per-batch copies would dominate an epoch.
Training state is written after every epoch to a resume file kept outside the
workflow's declared outputs, so a killed job picks up where it stopped and
finishes with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from prunequant.checkpoint import atomic_torch_save, save_model
from prunequant.model import SeparableCNN, training_form

__all__ = [
    "TrainConfig",
    "EpochRecord",
    "TrainResult",
    "pick_device",
    "seed_everything",
    "fingerprint",
    "evaluate",
    "train",
    "format_epoch_line",
    "write_history",
]

LR_SCHEDULES = ("none", "step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_schedule: str  # none | step (halve every lr_step_epochs) | cosine
    lr_step_epochs: int
    seed: int

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr_step_epochs < 1:
            raise ValueError("epochs, batch_size and lr_step_epochs must be at least 1")


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    train_time: float
    val_time: float


@dataclass(frozen=True)
class TrainResult:
    best_accuracy: float
    best_epoch: int
    history: list[EpochRecord]
    resumed_from_epoch: int


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is available")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(*parts: object, files: tuple[str | os.PathLike, ...] = ()) -> str:
    """Hash of JSON-able settings and file contents: identifies one training job's inputs."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=0.5)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, desc: str | None = None
) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy in percent, and the logits of every sample."""
    model.eval()
    logits = []
    for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=desc is None):
        logits.append(model(x[start : start + batch_size]))
    all_logits = torch.cat(logits)
    loss = nn.functional.cross_entropy(all_logits, y).item()
    accuracy = (all_logits.argmax(dim=1) == y).float().mean().item() * 100
    return loss, accuracy, all_logits


def _train_one_epoch(
    model, optimizer, x, y, *, batch_size, generator, after_step=None, objective=None
) -> tuple[float, float]:
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    loss_sum, correct = 0.0, 0
    with training_form(model):
        for start in tqdm(range(0, len(x), batch_size), desc="Training"):
            idx = order[start : start + batch_size]
            logits = model(x[idx])
            if objective is None:
                loss = nn.functional.cross_entropy(logits, y[idx])
            else:
                loss = objective(logits, y[idx], idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(dim=1) == y[idx]).sum().item()
    return loss_sum / len(x), correct / len(x) * 100


def format_epoch_line(record: EpochRecord) -> str:
    return (
        f"Epoch: {record.epoch} |train loss: {record.train_loss:.4f} "
        f"|train accuracy: {record.train_accuracy:.2f} |validation loss: {record.val_loss:.4f} "
        f"|validation accuracy: {record.val_accuracy:.2f} |learning rate: {record.learning_rate:.1e} "
        f"|train time: {record.train_time:.2f} |test time: {record.val_time:.2f}"
    )


def _load_resume_state(resume_path: Path, job_fingerprint: str, log: Callable[[str], None]) -> dict | None:
    """The saved training state, or None when there is none, it is unreadable, or it belongs to another job.

    A file that cannot be read (cut short by a full disk, say) is moved aside to ``<name>.unreadable``,
    kept for inspection, and training starts over instead of failing on every rerun.
    """
    import pickle  # only for the exception type a corrupt pickle raises

    if not resume_path.exists():
        return None
    try:
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        state, problem = None, " ".join(str(err).split())[:200]
    else:
        problem = None if isinstance(state, dict) else f"holds a {type(state).__name__}, not a training state"
    if problem is not None:
        unreadable = resume_path.with_name(resume_path.name + ".unreadable")
        os.replace(resume_path, unreadable)
        log(
            f"Warning: resume state {resume_path} cannot be read ({problem}); moved it to {unreadable} "
            "and training starts over."
        )
        return None
    if state.get("fingerprint") != job_fingerprint:
        log(f"Ignoring resume state {resume_path}: it was written for other inputs or settings.")
        return None
    return state


def train(
    model: SeparableCNN,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    *,
    device: torch.device,
    best_path: str | os.PathLike,
    resume_path: str | os.PathLike,
    job_fingerprint: str,
    checkpoint_metadata: dict | None = None,
    log: Callable[[str], None] = print,
    after_step: Callable[[], None] | None = None,
    save_best: Callable[[nn.Module, str | os.PathLike, dict], None] = save_model,
    objective: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> TrainResult:
    """Train with Adam, keep the best-validation-accuracy weights in ``best_path``.

    ``resume_path`` holds everything needed to continue after a crash: weights,
    optimizer, scheduler and shuffling RNG state, history and the best weights so far.
    It is deleted once training has finished and ``best_path`` is written.

    ``after_step`` runs after every optimizer step (e.g. to hold pruning masks at zero);
    ``save_best`` writes the best weights (models that are not a plain architecture, such
    as fake-quantized ones, bring their own format). ``objective`` replaces the cross-entropy
    training loss: (logits, labels, the batch's row indices into ``train_data``) → loss, e.g. a
    distillation loss (:mod:`prunequant.distill`); validation always scores cross-entropy.
    """
    resume_path = Path(resume_path)
    model.to(device)
    x_train, y_train = (t.to(device) for t in train_data)
    x_val, y_val = (t.to(device) for t in val_data)
    # One fused kernel per step instead of a handful of ops per parameter (CPU and CUDA alike).
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    scheduler = _make_scheduler(optimizer, config)
    generator = torch.Generator().manual_seed(config.seed)

    history: list[EpochRecord] = []
    best_accuracy, best_epoch, best_state = float("-inf"), 0, None
    state = _load_resume_state(resume_path, job_fingerprint, log)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = [EpochRecord(**row) for row in state["history"]]
        best_accuracy, best_epoch, best_state = (
            state["best_accuracy"],
            state["best_epoch"],
            state["best_state"],
        )
        log(f"Resuming from epoch {len(history)} ({resume_path})")
    resumed_from = len(history)

    for epoch in range(len(history) + 1, config.epochs + 1):
        learning_rate = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        train_loss, train_accuracy = _train_one_epoch(
            model,
            optimizer,
            x_train,
            y_train,
            batch_size=config.batch_size,
            generator=generator,
            after_step=after_step,
            objective=objective,
        )
        train_time = time.perf_counter() - started
        started = time.perf_counter()
        val_loss, val_accuracy, _ = evaluate(
            model, x_val, y_val, batch_size=max(config.batch_size, 256), desc="Testing"
        )
        val_time = time.perf_counter() - started
        scheduler.step()
        record = EpochRecord(
            epoch, train_loss, train_accuracy, val_loss, val_accuracy, learning_rate, train_time, val_time
        )
        history.append(record)
        log(format_epoch_line(record))
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            log("Saving...")
        atomic_torch_save(
            {
                "fingerprint": job_fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": [asdict(row) for row in history],
                "best_accuracy": best_accuracy,
                "best_epoch": best_epoch,
                "best_state": best_state,
            },
            resume_path,
        )

    model.load_state_dict(best_state)
    model.eval()
    metadata = dict(checkpoint_metadata or {}, best_val_accuracy=best_accuracy, best_epoch=best_epoch)
    save_best(model, best_path, metadata)
    log(f"Best accuracy: {best_accuracy:.2f}")
    resume_path.unlink(missing_ok=True)
    return TrainResult(best_accuracy, best_epoch, history, resumed_from)


def write_history(history: list[EpochRecord], path: str | os.PathLike) -> None:
    """Per-epoch history as CSV (one row per epoch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(asdict(history[0]).keys()) if history else list(EpochRecord.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for record in history:
            writer.writerow(asdict(record))
