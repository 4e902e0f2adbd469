"""Partial quantization: keep the layers int8 hurts most in float, until accuracy is within budget.

Following Wu et al. (arXiv 2004.09602, "Integer Quantization for Deep Learning Inference"): quantize
one layer at a time and measure the validation-accuracy drop of each; rank the layers by that drop;
then, starting from the fully quantized model, return the most sensitive layers to float one at a time
until the validation drop is within the budget. Every choice is made on validation data only; the
function never receives test data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from prunequant.errors import UserError
from prunequant.quantize.ptq import float_nodes_of, quantizable_nodes, quantize_ptq
from prunequant.quantize.runtime import OnnxClassifier

__all__ = ["quantize_partial", "float_nodes_of", "onnx_accuracy"]

_EVAL_BATCH = 256  # validation batch for accuracy; bounds memory, does not change the result


def onnx_accuracy(onnx_path: str | os.PathLike, inputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (fraction) of an ONNX classifier in ONNX Runtime on ``inputs`` [N, C, T]."""
    classifier = OnnxClassifier(onnx_path)
    predictions = np.concatenate(
        [
            classifier.predict(inputs[start : start + _EVAL_BATCH])
            for start in range(0, len(inputs), _EVAL_BATCH)
        ]
    )
    return float((predictions == np.asarray(labels)).mean())


def _check_partial_args(val_inputs: np.ndarray, val_labels: np.ndarray, budget_pp: float) -> None:
    if not np.isfinite(budget_pp) or budget_pp < 0:
        raise UserError(
            f"partial quantization budget_pp {budget_pp} is not a number of points >= 0: fix the setting"
        )
    if len(val_inputs) == 0 or len(val_inputs) != len(val_labels):
        raise UserError(
            f"partial quantization needs a non-empty validation set with one label per sample: got "
            f"{len(val_inputs)} inputs and {len(val_labels)} labels; set a validation fraction above 0"
        )


def quantize_partial(
    *,
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    record_path: str | os.PathLike,
    train_inputs: np.ndarray,
    val_inputs: np.ndarray,
    val_labels: np.ndarray,
    seed: int,
    budget_pp: float,
    **ptq_settings,
) -> dict:
    """Quantize with the most sensitive layers left in float, so that the validation drop <= ``budget_pp``.

    ``ptq_settings`` are :func:`quantize_ptq`'s recipe keywords (``calibration_samples``,
    ``calibration_method``, ``percentile``, ``quant_format``, ``per_channel``, and the int8 graph
    options ``depthwise_channel_multiple`` and ``lean_tail``);
    every candidate uses the same recipe and the same seeded calibration set. Writes the chosen
    model to ``int8_path`` and a JSON record to ``record_path``, and returns the record: fp32 and
    fully-int8 validation accuracy, one row per layer ``{node, op_type, val_accuracy, drop_pp}``
    in ranked order (largest drop first; ties in graph order), the ``float_nodes`` kept in float,
    the final validation accuracy and drop, and whether every layer had to stay float.
    """
    if "nodes_to_exclude" in ptq_settings:
        raise ValueError("quantize_partial chooses the float layers itself: do not pass nodes_to_exclude")
    _check_partial_args(val_inputs, val_labels, budget_pp)
    layers = quantizable_nodes(fp32_path)
    names = [name for name, _ in layers]
    fp32_accuracy = onnx_accuracy(fp32_path, val_inputs, val_labels)

    def drop_pp(accuracy: float) -> float:
        return 100.0 * (fp32_accuracy - accuracy)

    with tempfile.TemporaryDirectory() as tmpdir:
        workdir = Path(tmpdir)

        def quantize_and_score(tag: str, float_nodes: list[str]) -> tuple[Path, dict, float]:
            path = workdir / f"{tag}.onnx"
            record = quantize_ptq(
                fp32_path=fp32_path,
                int8_path=path,
                record_path=workdir / f"{tag}.json",
                train_inputs=train_inputs,
                seed=seed,
                nodes_to_exclude=float_nodes,
                **ptq_settings,
            )
            return path, record, onnx_accuracy(path, val_inputs, val_labels)

        rows = []
        for index, (name, op_type) in enumerate(layers):
            _, _, accuracy = quantize_and_score(f"only_{index}", [other for other in names if other != name])
            rows.append(
                {"node": name, "op_type": op_type, "val_accuracy": accuracy, "drop_pp": drop_pp(accuracy)}
            )
        # Stable sort: equal drops keep graph order, so the ranking is deterministic.
        ranked = sorted(rows, key=lambda row: -row["drop_pp"])

        float_nodes: list[str] = []
        path, record, accuracy = quantize_and_score("full", float_nodes)
        full_accuracy = accuracy
        for row in ranked:
            if drop_pp(accuracy) <= budget_pp:
                break
            float_nodes.append(row["node"])
            path, record, accuracy = quantize_and_score(f"float_{len(float_nodes)}", float_nodes)
        Path(int8_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, int8_path)

    result = {
        "budget_pp": float(budget_pp),
        "fp32_val_accuracy": fp32_accuracy,
        "full_int8_val_accuracy": full_accuracy,
        "full_int8_drop_pp": drop_pp(full_accuracy),
        "layers": ranked,
        "float_nodes": float_nodes,
        "final_val_accuracy": accuracy,
        "final_drop_pp": drop_pp(accuracy),
        "all_layers_float": len(float_nodes) == len(names),
        "val_samples": int(len(val_inputs)),
        "ptq": record,
    }
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result
