"""Scoring one deployed variant on the test split: accuracy, loss, size, cost and latency.

Each variant runs in its own process, in one runtime only: torch and ONNX Runtime
thread pools slow each other down when both are timed in one process.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.measure import (
    count_macs,
    count_parameters,
    file_bytes,
    make_onnx_runner,
    make_torch_runner,
    measure_latency,
    onnx_weight_bytes,
    state_dict_weight_bytes,
)
from prunequant.quantize import OnnxClassifier

__all__ = ["RUNTIMES", "LATENCY_BATCH_SIZES", "open_model", "predict_logits", "evaluate_variant"]

RUNTIMES = ("torch", "onnxruntime")
LATENCY_BATCH_SIZES = (1, 64)


def open_model(artifact_path: str | os.PathLike, runtime: str, *, threads: int):
    """A torch checkpoint as a model, or an ONNX file as an ONNX Runtime session."""
    if runtime == "torch":
        torch.set_num_threads(threads)
        return load_model(artifact_path)[0]
    if runtime == "onnxruntime":
        return OnnxClassifier(artifact_path, threads=threads)
    raise ValueError(f"unknown runtime {runtime!r}; known: {RUNTIMES}")


def predict_logits(model, x: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Logits of every sample, from a model opened by :func:`open_model`."""
    batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    if isinstance(model, OnnxClassifier):
        return np.concatenate([model(batch) for batch in batches])
    with torch.inference_mode():
        return torch.cat([model(torch.from_numpy(batch)) for batch in batches]).numpy()


def _latency(model, *, n_channels: int, length: int, threads: int, warmup: int, repeats: int) -> dict:
    latencies = {}
    for batch_size in LATENCY_BATCH_SIZES:
        shape = {"batch_size": batch_size, "n_channels": n_channels, "length": length, "threads": threads}
        if isinstance(model, OnnxClassifier):
            run = make_onnx_runner(model.path, **shape)
        else:
            run = make_torch_runner(model, **shape)
        latencies[f"latency_batch{batch_size}_ms"] = measure_latency(run, warmup=warmup, repeats=repeats)[
            "median_ms"
        ]
    return latencies


def evaluate_variant(
    *,
    artifact_path: str | os.PathLike,
    parent_model_path: str | os.PathLike,
    dataset_path: str | os.PathLike,
    model_name: str,
    prune_rate: float,
    precision: str,
    runtime: str,
    batch_size: int,
    latency_threads: int,
    latency_warmup: int,
    latency_repeats: int,
) -> tuple[dict, pd.DataFrame]:
    """Metrics of one variant and its per-sample test predictions.

    Parameters and MACs come from the parent fp32 network: folding BatchNorm and
    quantizing change how weights are stored, not how many there are or how much
    arithmetic a sample needs (BatchNorm's own few operations aside).
    """
    dataset = load_dataset(dataset_path)
    model = open_model(artifact_path, runtime, threads=latency_threads)
    logits = predict_logits(model, dataset.X_test, batch_size=batch_size)
    targets = torch.from_numpy(dataset.y_test)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits).float(), targets).item()
    predictions = logits.argmax(axis=1)
    parent, _ = load_model(parent_model_path)
    weight_bytes = state_dict_weight_bytes(parent) if runtime == "torch" else onnx_weight_bytes(artifact_path)
    metrics = {
        "model": model_name,
        "prune_rate": prune_rate,
        "precision": precision,
        "runtime": runtime,
        "accuracy": float((predictions == dataset.y_test).mean() * 100),
        "loss": loss,
        "n_test": int(len(dataset.y_test)),
        "parameters": count_parameters(parent),
        "macs": count_macs(parent, dataset.n_channels, dataset.length),
        "size_bytes": file_bytes(artifact_path),
        "weight_bytes": weight_bytes,
        "latency_threads": latency_threads,
        "latency_warmup": latency_warmup,
        "latency_repeats": latency_repeats,
        "cpu": platform.processor() or platform.machine(),
        "artifact": Path(artifact_path).name,
    }
    metrics.update(
        _latency(
            model,
            n_channels=dataset.n_channels,
            length=dataset.length,
            threads=latency_threads,
            warmup=latency_warmup,
            repeats=latency_repeats,
        )
    )
    table = pd.DataFrame(
        {
            "index": np.arange(len(predictions)),
            "label": dataset.y_test,
            "prediction": predictions,
            "correct": predictions == dataset.y_test,
        }
    )
    return metrics, table
