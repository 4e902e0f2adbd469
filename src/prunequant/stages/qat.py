"""The ``qat`` stage: quantization-aware training of an fp32 checkpoint, deployed as a real int8 model.

The deployment form (:func:`~prunequant.quantize.fold.deployment_model`) is trained with fake
quantization in the deployed scheme (:mod:`prunequant.quantize.fake_quant`), its ranges from
calibration then tracked, and converted to an int8 ONNX Runtime model with exactly those scales
(:mod:`prunequant.quantize.qat_convert`); the record says how closely the two agree. With a
teacher, the fake-quantized student trains against the float teacher (:mod:`prunequant.distill`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.distill import Teacher
from prunequant.engine import (
    TrainConfig,
    evaluate,
    fingerprint,
    pick_device,
    seed_everything,
    train,
    write_history,
)
from prunequant.errors import UserError
from prunequant.io import write_json
from prunequant.model import spec_of
from prunequant.quantize.agreement import agreement
from prunequant.quantize.fake_quant import RANGE_AVERAGING_CONSTANT, FakeQuantModel
from prunequant.quantize.fold import deployment_model
from prunequant.quantize.ptq import QUANT_FORMATS, select_calibration
from prunequant.quantize.qat import save_qat
from prunequant.quantize.qat_convert import convert_to_int8
from prunequant.quantize.runtime import OnnxClassifier

__all__ = ["run_qat"]


@dataclass(frozen=True)
class QatRecipe:
    """A QAT recipe's settings (``quantize.recipes[]`` with ``method: qat``), checked when made.

    ``reduce_range`` (7-bit weights) is for int8 CPUs without VNNI, as in
    ``ptq.quantize_static_int8``; ``calibration_samples`` None calibrates on every training sample.
    """

    epochs: int
    lr: float
    batch_size: int
    per_channel: bool
    quant_format: str
    calibration_samples: int | None
    weight_decay: float = 0.0
    reduce_range: bool = False

    def __post_init__(self):
        if self.quant_format not in QUANT_FORMATS:
            raise UserError(
                f"qat quant_format {self.quant_format!r} is not known: use one of {sorted(QUANT_FORMATS)}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError(
                f"qat epochs ({self.epochs}) and batch_size ({self.batch_size}) must be at least 1: "
                "raise them"
            )
        if not self.lr > 0 or self.weight_decay < 0:
            raise UserError(
                f"qat lr ({self.lr}) must be > 0 and weight_decay ({self.weight_decay}) >= 0: fix the setting"
            )
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise UserError(
                f"qat calibration_samples is {self.calibration_samples}: use >= 1, or null for all "
                "training samples"
            )


def _fake_quant_logits(model: FakeQuantModel, inputs: np.ndarray) -> np.ndarray:
    _, _, logits = evaluate(
        model, torch.from_numpy(inputs), torch.zeros(len(inputs), dtype=torch.long), batch_size=256
    )
    return logits.numpy()


def run_qat(
    *,
    model_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    recipe: QatRecipe,
    seed: int,
    device: str,
    checkpoint_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    history_path: str | os.PathLike,
    record_path: str | os.PathLike,
    resume_path: str | os.PathLike,
    teacher: Teacher | None = None,
) -> dict:
    """Quantization-aware training of an fp32 checkpoint, then conversion to an int8 ORT model.

    With a ``teacher``, the fake-quantized student trains against the float teacher
    (:mod:`prunequant.distill`) instead of the labels alone.

    Ranges start from the recipe's ``calibration_samples`` seeded training samples; training uses
    Adam at the recipe's constant ``lr``, keeps the best validation accuracy, and resumes from
    ``resume_path``. Writes the fake-quant checkpoint, the history CSV, the int8 ONNX model and
    a record JSON (returned). Test inputs are only used to report how closely the deployed int8
    model agrees with the fake-quant one; nothing is chosen on them.
    """
    if not Path(model_path).is_file():
        raise UserError(f"fp32 checkpoint {model_path} does not exist: train or fine-tune that model first")
    fp32_model, _ = load_model(model_path)
    spec = spec_of(fp32_model)
    dataset = load_dataset(dataset_path)
    n_train = len(dataset.X_train)
    calibration = select_calibration(dataset.X_train, recipe.calibration_samples or n_train, seed)

    seed_everything(seed)
    steps_per_epoch = math.ceil(n_train / recipe.batch_size)
    model = FakeQuantModel(
        deployment_model(fp32_model),
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        freeze_after_steps=(recipe.epochs - 1) * steps_per_epoch,
    )
    model.calibrate(torch.from_numpy(calibration))
    if recipe.epochs == 1:  # the last epoch is the only one: train against the calibrated ranges throughout
        model.freeze_ranges()
    x_val, y_val = torch.from_numpy(dataset.X_val), torch.from_numpy(dataset.y_val)
    _, calibrated_val_accuracy, _ = evaluate(model, x_val, y_val, batch_size=256)

    config = TrainConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        lr_schedule="none",
        lr_step_epochs=1,
        seed=seed,
    )
    settings = {
        "training": asdict(config),
        "per_channel": recipe.per_channel,
        "reduce_range": recipe.reduce_range,
        "quant_format": recipe.quant_format,
        "calibration_samples": int(len(calibration)),
        "range_update": f"EMA of batch min/max ({RANGE_AVERAGING_CONSTANT}), frozen in the last epoch",
    }
    teacher_parts, teacher_files = Teacher.inputs(teacher)
    if teacher is not None:
        settings["distillation"] = asdict(teacher.distillation)
    target = pick_device(device)
    print(f"Quantization-aware training on {target} ({torch.get_num_threads()} CPU threads)")
    x_train = torch.from_numpy(dataset.X_train)
    started = time.perf_counter()
    result = train(
        model,
        (x_train, torch.from_numpy(dataset.y_train)),
        (x_val, y_val),
        config,
        device=target,
        best_path=checkpoint_path,
        resume_path=resume_path,
        job_fingerprint=fingerprint(
            settings, *teacher_parts, files=(str(dataset_path), str(model_path), *teacher_files)
        ),
        checkpoint_metadata={"settings": settings, "classes": list(dataset.classes)},
        after_step=model.after_step,
        save_best=lambda trained, path, metadata: save_qat(trained, path, spec, metadata),
        objective=None if teacher is None else teacher.objective(x_train, device=target),
    )
    train_seconds = time.perf_counter() - started
    write_history(result.history, history_path)

    model = model.cpu().eval()
    conversion = convert_to_int8(
        model,
        onnx_path,
        calibration,
        quant_format=recipe.quant_format,
        n_channels=dataset.n_channels,
        length=dataset.length,
    )
    int8 = OnnxClassifier(onnx_path)
    int8_val_accuracy = float((int8.predict(dataset.X_val) == dataset.y_val).mean() * 100)
    test_agreement = agreement(_fake_quant_logits(model, dataset.X_test), int8(dataset.X_test))
    test_agreement["samples"] = len(dataset.X_test)
    record = {
        "settings": settings,
        "device": str(target),
        "epochs": recipe.epochs,
        "best_epoch": result.best_epoch,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_seconds": train_seconds,
        "val_accuracy_fake_quant_calibrated": calibrated_val_accuracy,
        "val_accuracy_fake_quant": result.best_accuracy,
        "val_accuracy_int8": int8_val_accuracy,
        "int8_vs_fake_quant_test": test_agreement,
        "activation_type": "uint8",
        "weight_type": "int8",
        "onnxruntime_version": ort.__version__,
        **conversion,
    }
    write_json(record, record_path)
    return record
