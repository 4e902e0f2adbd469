"""The tflm stage: every full-int8 recipe of one model of one run, converted, measured and scored in TFLM.

One job per (run, model) converts all its recipes in one converter process (its imports are paid
once). Per recipe it writes the ``.tflite``, a record (the conversion's settings, TFLM's ops, flash,
arena total / head / tail and its bisection check, host reference-kernel time, the activation
estimate beside the arena head, agreement with the ORT int8 model of the same recipe) and the
evaluation JSON and predictions CSV every stage writes; the evaluation carries the record's
numbers too, so the report reads them like any other column.

A recipe that cannot be converted or run gets a record and an evaluation that say why in one line
(``unavailable``), an empty ``.tflite`` and predictions table, and the job still succeeds: the
rest of the study, and the report, go on without that variant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prunequant.errors import UserError
from prunequant.io import write_json

__all__ = ["TflmRecipeFiles", "deploy_in_tflm", "UNAVAILABLE"]

UNAVAILABLE = "unavailable"  # the evaluation key that says why a variant was not deployed
# The record's measurements that the evaluation carries too.
_MEASURED = (
    "flash_bytes",
    "arena_bytes",
    "arena_head_bytes",
    "arena_tail_bytes",
    "arena_bytes_by_bisection",
    "host_ms_median",
    "activation_estimate_minus_arena_head_bytes",
)


@dataclass(frozen=True)
class TflmRecipeFiles:
    """What one recipe's TFLM deployment reads and writes."""

    settings: dict  # the recipe's settings (``quantize.recipes`` without the name)
    variant: dict  # names and method settings copied into the evaluation
    onnxruntime_predictions: str  # the ORT int8 model of the same recipe: agreement is measured against it
    tflite: str
    record: str
    evaluation: str
    predictions: str
    qat_checkpoint: str | None = None  # a qat recipe's trained model


def _agreement_with_onnxruntime(evaluation: Mapping, predictions_path: str, ort_predictions: str) -> dict:
    from prunequant.evaluation import read_logits
    from prunequant.quantize.agreement import agreement

    measured = agreement(read_logits(ort_predictions, "test"), read_logits(predictions_path, "test"))
    return {f"onnxruntime_int8_{key}": value for key, value in measured.items()}


def _write_unavailable(files: TflmRecipeFiles, reason: str) -> None:
    print(f"{files.variant['model']}/{files.variant['deployment']} is not deployed in TFLM: {reason}")
    Path(files.tflite).parent.mkdir(parents=True, exist_ok=True)
    Path(files.tflite).write_bytes(b"")
    Path(files.predictions).write_text("")
    write_json({"recipe": files.variant["deployment"], UNAVAILABLE: reason}, files.record)
    name = f"{files.variant['model']}/{files.variant['deployment']}"
    write_json(dict(files.variant, variant=name, **{UNAVAILABLE: reason}), files.evaluation)


def deploy_in_tflm(
    recipes: Mapping[str, TflmRecipeFiles],
    *,
    parent_model_path: str | os.PathLike,
    parent_predictions_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    seed: int,
    batch_size: int,
    timing_repeats: int = 200,
) -> dict[str, dict]:
    """Convert, measure and score every recipe; returns recipe → its evaluation (or why not)."""
    import torch

    from prunequant.checkpoint import load_model
    from prunequant.data import load_dataset
    from prunequant.deploy.convert import convert_models
    from prunequant.deploy.recipes import recipe_request
    from prunequant.deploy.tflm import measure_tflite
    from prunequant.evaluation import write_evaluation

    dataset = load_dataset(dataset_path)
    parent, _ = load_model(parent_model_path)
    requests, results = {}, {}
    for name, files in recipes.items():
        try:
            requests[name] = recipe_request(
                files.settings,
                parent=parent,
                train_inputs=dataset.X_train,
                seed=seed,
                qat_checkpoint=files.qat_checkpoint,
            )
        except UserError as error:
            results[name] = error
    results |= convert_models(requests) if requests else {}
    evaluations = {}
    for name, files in recipes.items():
        data = results[name]
        try:
            if isinstance(data, UserError):
                raise data
            Path(files.tflite).parent.mkdir(parents=True, exist_ok=True)
            Path(files.tflite).write_bytes(data)
            record = measure_tflite(
                data, dataset.X_val[0], name=files.variant["deployment"], repeats=timing_repeats
            )
        except UserError as error:
            _write_unavailable(files, str(error))
            evaluations[name] = {UNAVAILABLE: str(error)}
            continue
        request = requests[name]
        record.update(
            converter="litert-torch",
            per_channel=request.per_channel,
            observer=request.observer,
            percentile=request.percentile if request.observer == "percentile" else None,
            fixed_activation_qparams=bool(request.activation_qparams),
            calibration_samples=len(request.calibration),
            seed=seed,
            torch_version=torch.__version__,
        )
        evaluation = write_evaluation(
            artifact_path=files.tflite,
            parent_model_path=parent_model_path,
            dataset_path=dataset_path,
            variant=files.variant,
            batch_size=batch_size,
            evaluation_path=files.evaluation,
            predictions_path=files.predictions,
            parent_predictions_path=parent_predictions_path,
        )
        record["peak_activation_bytes"] = evaluation["peak_activation_bytes"]
        record["activation_estimate_minus_arena_head_bytes"] = (
            evaluation["peak_activation_bytes"] - record["arena_head_bytes"]
        )
        record |= _agreement_with_onnxruntime(evaluation, files.predictions, files.onnxruntime_predictions)
        evaluation |= {key: record[key] for key in _MEASURED} | {
            key: value for key, value in record.items() if key.startswith("onnxruntime_int8_")
        }
        write_json(record, files.record)
        write_json(evaluation, files.evaluation)
        evaluations[name] = evaluation
    return evaluations
