"""Scoring one deployed variant: validation and test accuracy and loss, size, cost, agreement.

Every stage that makes an artifact scores it before it ends (:func:`write_evaluation`), in
one runtime only, so no job exists just to score and a study of a hundred variants does not
pay a hundred extra process start-ups. Latency is not measured here:
all variants of a runtime are timed together, interleaved (:mod:`prunequant.latency`).
Validation scores sit next to test scores so that every choice (a recipe, a recommendation)
can be made on validation; the per-sample predictions keep each sample's identity and logits,
so paired statistics and agreement need no rerun.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from prunequant.data import load_dataset
from prunequant.io import write_json
from prunequant.measure import file_bytes, onnx_weight_bytes
from prunequant.quantize.agreement import agreement
from prunequant.variants import RUNTIMES, parse_deployment

# Each runtime (torch, or onnx and ONNX Runtime) is imported only where a model of it is scored
# or described: a job that scores an ONNX model never pays seconds to import torch, and a torch
# job loads no ONNX Runtime. Nor is pandas imported: the predictions table is written and read
# with the csv module, which saves every scoring job about half a second of start-up.

__all__ = [
    "RUNTIMES",
    "open_model",
    "predict_logits",
    "evaluate_variant",
    "write_evaluation",
    "read_logits",
]

SPLITS_SCORED = ("val", "test")


def open_model(artifact_path: str | os.PathLike, runtime: str, *, threads: int = 1):
    """A torch checkpoint as a model, an ONNX file as an ONNX Runtime session, or a .tflite in TFLM."""
    if runtime == "torch":
        import torch

        from prunequant.checkpoint import load_model

        torch.set_num_threads(threads)
        return load_model(artifact_path)[0]
    if runtime == "onnxruntime":
        from prunequant.quantize.runtime import OnnxClassifier

        return OnnxClassifier(artifact_path, threads=threads)
    if runtime == "tflm":
        from prunequant.deploy.tflm import TflmClassifier

        return TflmClassifier(artifact_path)
    raise ValueError(f"unknown runtime {runtime!r}; known: {RUNTIMES}")


def predict_logits(model, x: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Logits of every sample, from a model opened by :func:`open_model`."""
    batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    torch = sys.modules.get("torch")  # a torch model exists only once torch is imported
    if torch is None or not isinstance(model, torch.nn.Module):
        return np.concatenate([model(batch) for batch in batches])
    with torch.inference_mode():
        return torch.cat([model(torch.from_numpy(batch)) for batch in batches]).numpy()


def read_logits(predictions_path: str | os.PathLike, split: str = "test") -> np.ndarray:
    """The logits of one split from a predictions CSV written by :func:`write_evaluation`."""
    with open(predictions_path, newline="") as stream:
        rows = csv.reader(stream)
        header = next(rows)
        split_column = header.index("split")
        logit_columns = [index for index, name in enumerate(header) if name.startswith("logit_")]
        logits = [[row[index] for index in logit_columns] for row in rows if row[split_column] == split]
    return np.array(logits, dtype=np.float32).reshape(len(logits), len(logit_columns))


def _write_predictions(columns: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """The per-sample table as CSV; float32 logits in their shortest exact text form."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    texts = [column.astype(str) for column in columns.values()]
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*texts, strict=True))


def _scores(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy in percent and mean cross-entropy (log-softmax in float64)."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    return float((logits.argmax(axis=1) == labels).mean() * 100), loss


def _model_description(parent_model_path, dataset, family: str) -> dict:
    """Parameters, non-zero parameters, MACs (and sparse storage) of the fp32 parent network."""
    from prunequant.checkpoint import load_model
    from prunequant.measure import count_macs, count_parameters
    from prunequant.prune.unstructured import sparsity_record, storage_bytes

    parent, _ = load_model(parent_model_path)
    description = {
        "parameters": count_parameters(parent),
        "nonzero_parameters": int(sparsity_record(parent)["nonzero_parameters"]),
        "macs": count_macs(parent, dataset.n_channels, dataset.length),
        "peak_activation_elements": _peak_activation_elements(parent, dataset),
    }
    if family == "unstructured":
        description.update(
            {
                f"storage_{key}": value
                for key, value in storage_bytes(parent).items()
                if isinstance(value, int | float)
            }
        )
    return description


def _peak_activation_elements(parent, dataset) -> int:
    """The deployment form's largest set of live activations at batch 1, in elements: times the
    element size, what a runtime's arena must hold for activations (prunequant.deploy.memory)."""
    import torch

    from prunequant.deploy.memory import model_peak_activation_bytes
    from prunequant.quantize.fold import deployment_model

    example = torch.zeros(1, dataset.n_channels, dataset.length)
    return model_peak_activation_bytes(deployment_model(parent), example, element_size=1).bytes


_ELEMENT_BYTES = {"fp32": 4, "int8": 1}


def _parent_description(parent_predictions_path) -> dict:
    """The same description, read from the parent's evaluation beside its predictions."""
    parent = json.loads((Path(parent_predictions_path).parent / "evaluation.json").read_text())
    return {
        key: value
        for key, value in parent.items()
        if key in ("parameters", "nonzero_parameters", "macs", "peak_activation_elements")
        or key.startswith("storage_")
    }


def _weight_bytes(artifact_path, parent_model_path, runtime: str) -> int:
    if runtime == "torch":
        return _torch_weight_bytes(parent_model_path)
    if runtime == "tflm":
        from prunequant.deploy.tflm import tflite_weight_bytes

        return tflite_weight_bytes(Path(artifact_path).read_bytes())
    return onnx_weight_bytes(artifact_path)


def _torch_weight_bytes(parent_model_path) -> int:
    from prunequant.checkpoint import load_model
    from prunequant.measure import state_dict_weight_bytes

    return state_dict_weight_bytes(load_model(parent_model_path)[0])


def evaluate_variant(
    *,
    artifact_path: str | os.PathLike,
    parent_model_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    variant: dict,
    batch_size: int,
    parent_predictions_path: str | os.PathLike | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics of one variant and its per-sample validation and test predictions, as columns.

    ``variant`` holds the run, seed, model and deployment names and the model's method
    settings; they are copied into the metrics so that the report only aggregates files.
    Parameters and MACs come from the parent fp32 network: folding BatchNorm and
    quantizing change how weights are stored, not how many there are or how much
    arithmetic a sample needs (BatchNorm's own few operations aside).
    """
    form = parse_deployment(variant["deployment"])
    dataset = load_dataset(dataset_path)
    model = open_model(artifact_path, form["runtime"])
    metrics = dict(variant, **form, variant=f"{variant['model']}/{variant['deployment']}")
    tables: list[dict[str, np.ndarray]] = []
    logits_by_split = {}
    for split in SPLITS_SCORED:
        x, y = dataset.split(split)
        logits = predict_logits(model, x, batch_size=batch_size)
        logits_by_split[split] = logits
        accuracy, loss = _scores(logits, y)
        prefix = "" if split == "test" else "val_"
        metrics.update({f"{prefix}accuracy": accuracy, f"{prefix}loss": loss, f"n_{split}": int(len(y))})
        predictions = logits.argmax(axis=1)
        table = {
            "split": np.full(len(y), split),
            "index": np.arange(len(y)),
            "sample_id": np.asarray(getattr(dataset, f"ids_{split}")),
            "label": y,
            "prediction": predictions,
            "correct": predictions == y,
        }
        table |= {f"logit_{k}": logits[:, k].astype(np.float32) for k in range(logits.shape[1])}
        tables.append(table)
    if parent_predictions_path is not None:
        # Quantizing changes how weights are stored, not how many there are or the arithmetic.
        metrics.update(_parent_description(parent_predictions_path))
    else:
        metrics.update(_model_description(parent_model_path, dataset, variant["family"]))
    metrics.update(
        size_bytes=file_bytes(artifact_path),
        weight_bytes=_weight_bytes(artifact_path, parent_model_path, form["runtime"]),
        artifact=Path(artifact_path).as_posix(),
    )
    if "peak_activation_elements" in metrics:
        element_bytes = _ELEMENT_BYTES[form["precision"]]
        metrics["peak_activation_bytes"] = metrics["peak_activation_elements"] * element_bytes
    if parent_predictions_path is not None:
        metrics.update(agreement(read_logits(parent_predictions_path, "test"), logits_by_split["test"]))
    return metrics, {name: np.concatenate([table[name] for table in tables]) for name in tables[0]}


def write_evaluation(
    *,
    artifact_path: str | os.PathLike,
    parent_model_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    variant: dict,
    batch_size: int,
    evaluation_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    parent_predictions_path: str | os.PathLike | None = None,
) -> dict:
    """:func:`evaluate_variant`, written as the stage's evaluation JSON and predictions CSV."""
    metrics, predictions = evaluate_variant(
        artifact_path=artifact_path,
        parent_model_path=parent_model_path,
        dataset_path=dataset_path,
        variant=variant,
        batch_size=batch_size,
        parent_predictions_path=parent_predictions_path,
    )
    write_json(metrics, evaluation_path)
    _write_predictions(predictions, predictions_path)
    print(
        f"Evaluated {metrics['variant']}: validation {metrics['val_accuracy']:.2f}%, "
        f"test {metrics['accuracy']:.2f}%, {metrics['weight_bytes']} weight bytes"
    )
    return metrics
