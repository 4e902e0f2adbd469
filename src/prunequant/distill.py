"""Knowledge distillation: a student trained to match a teacher's softened outputs as well as the labels.

Hinton, Vinyals and Dean (2015), "Distilling the Knowledge in a Neural Network": with temperature
T, the soft term is the KL divergence from the teacher's to the student's class distribution at
T, scaled by T² so that its gradients keep their size as T changes; ``alpha`` mixes it with the
hard-label cross-entropy:

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(student, y)

``alpha = 0`` is plain cross-entropy training, to the bit. Losses are registered by name
(:data:`LOSSES`), as every method of the study is. The teacher is a trained model of the same run,
in eval mode; the training inputs are fixed tensors (no augmentation), so its logits for every
training sample are computed once per job (:func:`teacher_logits`) and are exactly what it would
produce at every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prunequant.checkpoint import load_model

__all__ = [
    "LOSSES",
    "Distillation",
    "Teacher",
    "distillation_objective",
    "soft_target_loss",
    "teacher_logits",
]


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton's distillation loss (see the module text), averaged over the batch."""
    hard = nn.functional.cross_entropy(student_logits, labels)
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / temperature, dim=1),
        nn.functional.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


# Distillation losses by name: ``distillation[].loss`` in the config.
LOSSES: dict[str, Callable[..., torch.Tensor]] = {"soft_targets": soft_target_loss}


@dataclass(frozen=True)
class Distillation:
    """One named distillation setting of the config (``distillation:``)."""

    name: str
    loss: str
    temperature: float
    alpha: float
    teacher: str  # a model of the study, trained in the same run

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown distillation loss {self.loss!r}: use one of {sorted(LOSSES)}")
        if not self.temperature > 0:
            raise ValueError(f"distillation temperature must be > 0, got {self.temperature!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distillation alpha must lie in [0, 1], got {self.alpha!r}")

    @classmethod
    def from_settings(cls, settings: Mapping) -> Distillation:
        return cls(**{key: settings[key] for key in ("name", "loss", "temperature", "alpha", "teacher")})


@torch.inference_mode()
def teacher_logits(
    teacher_path: str | os.PathLike, x: torch.Tensor, *, batch_size: int, device: torch.device
) -> torch.Tensor:
    """The teacher's logits for every row of ``x``, in eval mode, on ``device``."""
    teacher, _ = load_model(teacher_path)
    teacher.to(device).eval()
    x = x.to(device)
    return torch.cat([teacher(x[start : start + batch_size]) for start in range(0, len(x), batch_size)])


def distillation_objective(
    distillation: Distillation, logits_of_teacher: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of a student: (student logits, labels, batch indices) → loss.

    ``logits_of_teacher`` holds the teacher's logits of every training sample, indexed like the
    training tensors; the batch indices pick the batch's rows.
    """
    loss = LOSSES[distillation.loss]

    def objective(student: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return loss(
            student,
            logits_of_teacher[indices],
            labels,
            temperature=distillation.temperature,
            alpha=distillation.alpha,
        )

    return objective


@dataclass(frozen=True)
class Teacher:
    """What a distilled student is trained against: a trained model of its run, and how."""

    path: str | os.PathLike
    distillation: Distillation

    @classmethod
    def of(cls, distillation: Mapping | None, teacher_path: str | os.PathLike | None) -> Teacher | None:
        """From a stage's ``distillation`` settings (None: no distillation) and the teacher's file."""
        if distillation is None:
            return None
        if teacher_path is None:
            raise ValueError("a distilled student needs its teacher's model file")
        return cls(teacher_path, Distillation.from_settings(distillation))

    @staticmethod
    def inputs(teacher: Teacher | None) -> tuple[tuple, tuple[str, ...]]:
        """What a job's resume fingerprint adds for ``teacher``: its settings and its file (nothing
        for a model trained on labels alone, whose fingerprint stays as it was)."""
        if teacher is None:
            return (), ()
        return (asdict(teacher.distillation),), (str(teacher.path),)

    def objective(self, x_train: torch.Tensor, *, device: torch.device):
        """The distillation loss for training on ``x_train`` (its rows indexed as in training)."""
        print(f"Distilling from {self.path} ({self.distillation})")
        return distillation_objective(
            self.distillation, teacher_logits(self.path, x_train, batch_size=256, device=device)
        )
