"""Post-training static int8 quantization of an fp32 ONNX model with ONNX Runtime.

A recipe is a calibration method (MinMax, Entropy, Percentile), a calibration set size, per-channel
or per-tensor weight scales, a graph format (QOperator or QDQ) and the layers left in float.
:func:`quantize_ptq` applies one recipe and writes a record of everything it did.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime import quantization as ortq

from prunequant.errors import UserError
from prunequant.quantize.int8_graph import DEPTHWISE_CHANNEL_MULTIPLE, finish_int8_graph_in_file
from prunequant.quantize.onnx_files import quiet, strip_debug_metadata

__all__ = [
    "QUANT_FORMATS",
    "CALIBRATION_METHODS",
    "CALIBRATION_BATCH",
    "QUANTIZABLE_OP_TYPES",
    "quantize_static_int8",
    "prepare_for_quantization",
    "calibration_batch_size",
    "select_calibration",
    "quantize_ptq",
    "quantizable_nodes",
    "float_nodes_of",
    "count_quantized_ops",
    "has_int8_ops",
]

QUANT_FORMATS = {"QOperator": ortq.QuantFormat.QOperator, "QDQ": ortq.QuantFormat.QDQ}
CALIBRATION_METHODS = {
    "MinMax": ortq.CalibrationMethod.MinMax,
    "Entropy": ortq.CalibrationMethod.Entropy,
    "Percentile": ortq.CalibrationMethod.Percentile,
}
CALIBRATION_BATCH = 64  # largest calibration batch fed to ORT; bounds the memory of one calibration run

# The layers a recipe can quantize or keep in float: the ones that hold weights.
QUANTIZABLE_OP_TYPES = ("Conv", "Gemm", "MatMul")

# Op types that only exist in a graph whose arithmetic runs on 8-bit integers.
_INT8_OP_TYPES = (
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "ConvInteger",
    "MatMulInteger",
    "QuantizeLinear",
    "DequantizeLinear",
)


def calibration_batch_size(n_samples: int, max_batch: int = CALIBRATION_BATCH) -> int:
    """The largest batch size <= ``max_batch`` that divides ``n_samples`` evenly.

    ORT's histogram calibrators (Entropy, Percentile) stack the outputs of every calibration
    batch with ``np.asarray`` before building one histogram over all of them, which fails
    ("inhomogeneous shape") when the last batch is shorter. Equal batches avoid that without
    dropping or repeating a sample, so every method sees exactly the chosen calibration set and
    the ranges do not depend on the batching: MinMax takes the min/max over all batches and the
    histogram methods build one histogram of all values. Padding would add fake samples and
    trimming would discard real ones; both would change the statistics.
    """
    if n_samples < 1 or max_batch < 1:
        raise ValueError(f"need n_samples >= 1 and max_batch >= 1, got {n_samples} and {max_batch}")
    return max(d for d in range(1, min(n_samples, max_batch) + 1) if n_samples % d == 0)


class _ArrayReader(ortq.CalibrationDataReader):
    """Feeds a float32 [N, C, T] array to the calibrator in equal-size, fixed-order batches."""

    def __init__(self, data: np.ndarray, max_batch: int, input_name: str = "input"):
        self._data = data
        self._batch_size = calibration_batch_size(len(data), max_batch)
        self._input_name = input_name
        self._start = 0

    def get_next(self) -> dict | None:
        if self._start >= len(self._data):
            return None
        batch = self._data[self._start : self._start + self._batch_size]
        self._start += self._batch_size
        return {self._input_name: batch}

    def __len__(self) -> int:
        return len(self._data) // self._batch_size

    def rewind(self) -> None:
        self._start = 0


def _check_quant_args(
    calibration: np.ndarray,
    quant_format: str,
    calibration_method: str,
    batch_size: int,
    percentile: float | None,
) -> None:
    if quant_format not in QUANT_FORMATS:
        raise UserError(
            f"quantize quant_format {quant_format!r} is not known: use one of {sorted(QUANT_FORMATS)}"
        )
    if calibration_method not in CALIBRATION_METHODS:
        raise UserError(
            f"quantize calibration_method {calibration_method!r} is not known: "
            f"use one of {sorted(CALIBRATION_METHODS)}"
        )
    if calibration_method == "Percentile" and percentile is None:
        raise UserError(
            "quantize calibration_method Percentile needs a percentile: set the recipe's percentile"
        )
    if percentile is not None and not 0.0 < percentile <= 100.0:
        raise UserError(f"quantize percentile {percentile} is outside (0, 100]: use e.g. 99.999")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if calibration.ndim != 3:
        raise ValueError(f"calibration must be a [N, C, T] array, got shape {calibration.shape}")
    if len(calibration) == 0:
        raise ValueError(
            "calibration set is empty: static quantization needs samples to set activation ranges"
        )
    if not np.isfinite(calibration).all():
        raise ValueError("calibration set contains NaN or infinite values")


def prepare_for_quantization(fp32_path: str | os.PathLike, prepared_path: str | os.PathLike) -> None:
    """ORT's pre-processing (graph optimisation, ONNX shape inference) before quantize_static.

    Symbolic shape inference is skipped: ONNX's own inference types every tensor of these
    models (the batch axis is the only symbolic one), and the quantized nodes and initializers
    come out the same. Its module would import torch when torch is installed (onnxruntime.tools
    does), two seconds of a quantization job that otherwise never loads torch.
    """
    with quiet():
        ortq.quant_pre_process(str(fp32_path), str(prepared_path), skip_symbolic_shape=True)


def _check_nodes_to_exclude(prepared: onnx.ModelProto, nodes_to_exclude: Sequence[str]) -> None:
    known = [name for name, _ in _weighted_nodes(prepared.graph)]
    unknown = sorted(set(nodes_to_exclude) - set(known))
    if unknown:
        raise UserError(
            f"quantize nodes_to_exclude names {unknown}, not Conv/Gemm/MatMul nodes of the model: use {known}"
        )


def quantize_static_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration: np.ndarray,
    *,
    quant_format: str,
    calibration_method: str,
    per_channel: bool,
    percentile: float | None = None,  # Percentile only (and then required): the % of values kept
    nodes_to_exclude: Sequence[str] = (),
    batch_size: int = CALIBRATION_BATCH,  # largest calibration batch; see calibration_batch_size
    reduce_range: bool = False,
) -> Path:
    """Quantize an fp32 ONNX classifier to int8 with activation ranges from ``calibration``.

    The graph is quantized as it was exported (the deployment form), so the int8 model differs
    from its fp32 parent only by quantization. ``calibration`` is float32 [N, C, T].
    ``quant_format`` is "QOperator" (QLinearConv etc.) or "QDQ" (Quantize/DequantizeLinear
    around float ops, fused by ORT at load time).
    ``calibration_method`` is "MinMax", "Entropy" or "Percentile". ``nodes_to_exclude`` names
    Conv/Gemm/MatMul nodes of the fp32 graph that stay in float.
    """
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    _check_quant_args(calibration, quant_format, calibration_method, batch_size, percentile)
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as tmpdir:
        prepared = Path(tmpdir) / "prepared.onnx"
        quantized = Path(tmpdir) / "int8.onnx"
        prepare_for_quantization(fp32_path, prepared)
        # Names are checked on the pre-processed graph: that is the one the quantizer sees.
        _check_nodes_to_exclude(onnx.load(str(prepared)), nodes_to_exclude)
        with quiet():
            ortq.quantize_static(
                str(prepared),
                str(quantized),
                _ArrayReader(calibration, batch_size),
                quant_format=QUANT_FORMATS[quant_format],
                calibrate_method=CALIBRATION_METHODS[calibration_method],
                per_channel=per_channel,
                nodes_to_exclude=list(nodes_to_exclude),
                # uint8 activations x int8 weights (U8S8) is the pair MLAS's x86 int8 kernels are
                # built around: VNNI's vpdpbusd multiplies u8 by s8 natively. Without VNNI
                # (AVX2/plain AVX512) those kernels use vpmaddubsw, whose int16 pair sums can
                # saturate; reduce_range=True (7-bit weights) avoids that there.
                activation_type=ortq.QuantType.QUInt8,
                weight_type=ortq.QuantType.QInt8,
                reduce_range=reduce_range,
                extra_options={
                    "WeightSymmetric": True,
                    "ActivationSymmetric": False,
                }
                | ({"CalibPercentile": float(percentile)} if calibration_method == "Percentile" else {}),
            )
        strip_debug_metadata(quantized)
        int8_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(quantized, int8_path)
    return int8_path


def select_calibration(train_inputs: np.ndarray, n_samples: int | None, seed: int) -> np.ndarray:
    """``n_samples`` training samples drawn without replacement; all of them if None or fewer."""
    if n_samples is not None and n_samples < 1:
        raise UserError(
            f"quantize calibration_samples {n_samples} is below 1: give a count >= 1, or null for all samples"
        )
    if n_samples is None or n_samples >= len(train_inputs):
        return train_inputs
    chosen = np.random.default_rng(seed).choice(len(train_inputs), size=n_samples, replace=False)
    return train_inputs[np.sort(chosen)]


def quantize_ptq(
    *,
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    record_path: str | os.PathLike,
    train_inputs: np.ndarray,
    seed: int,
    calibration_samples: int | None,
    calibration_method: str,
    percentile: float | None = None,
    quant_format: str,
    per_channel: bool,
    nodes_to_exclude: Sequence[str] = (),
    depthwise_channel_multiple: int = DEPTHWISE_CHANNEL_MULTIPLE,
    lean_tail: bool = True,
) -> dict:
    """Apply one post-training recipe: calibrate on a seeded subset of the training inputs, quantize,
    and write a JSON record of everything that was done to ``record_path``; returns the record.

    ``calibration_samples`` None uses every training sample. Calibration never sees validation
    or test data. ``nodes_to_exclude`` names Conv/Gemm/MatMul nodes that stay in float.
    ``depthwise_channel_multiple`` is :func:`pad_depthwise_channels`' (1: no padding);
    ``lean_tail`` applies :func:`float_logits` and :func:`channels_last_global_pools` (see
    :func:`finish_int8_graph_in_file`).
    """
    calibration = select_calibration(train_inputs, calibration_samples, seed)
    quantize_static_int8(
        fp32_path,
        int8_path,
        calibration,
        quant_format=quant_format,
        calibration_method=calibration_method,
        per_channel=per_channel,
        percentile=percentile,
        nodes_to_exclude=nodes_to_exclude,
    )
    graph_rewrites = finish_int8_graph_in_file(
        int8_path, depthwise_channel_multiple=depthwise_channel_multiple, lean_tail=lean_tail
    )
    op_counts = count_quantized_ops(int8_path)
    float_nodes = float_nodes_of(int8_path)
    all_layers = [name for name, _ in quantizable_nodes(fp32_path)]
    if not has_int8_ops(op_counts) and set(float_nodes) != set(all_layers):
        raise RuntimeError(f"{int8_path} holds no int8 operators: {op_counts}")
    record = {
        "calibration_samples": int(len(calibration)),
        "calibration_samples_setting": calibration_samples,  # None: every training sample
        "calibration_batch": calibration_batch_size(len(calibration)),
        "calibration_method": calibration_method,
        "percentile": float(percentile) if calibration_method == "Percentile" else None,
        "quant_format": quant_format,
        "per_channel": per_channel,
        "activation_type": "uint8",
        "weight_type": "int8",
        "seed": seed,
        "nodes_to_exclude": list(nodes_to_exclude),
        **graph_rewrites,  # depthwise_channels_padded, float_logits, channels_last_pools
        "float_nodes": float_nodes,
        "quantized_nodes": [name for name in all_layers if name not in float_nodes],
        "op_counts": op_counts,
        "onnxruntime_version": ort.__version__,
    }
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _weighted_nodes(graph: onnx.GraphProto) -> list[tuple[str, str]]:
    return [(node.name, node.op_type) for node in graph.node if node.op_type in QUANTIZABLE_OP_TYPES]


def quantizable_nodes(onnx_path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(node name, op type)`` of every Conv/Gemm/MatMul node of an fp32 graph, in graph order."""
    return _weighted_nodes(onnx.load(str(onnx_path), load_external_data=False).graph)


def float_nodes_of(onnx_path: str | os.PathLike) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes of a quantized graph that still compute in float.

    QOperator replaces a quantized layer by QLinearConv/QGemm/QLinearMatMul, so a remaining
    Conv/Gemm/MatMul is float. QDQ keeps the float op and feeds it dequantized int8 weights, so
    there a layer is float when its weight does not come out of a DequantizeLinear. ORT fuses
    exactly the DequantizeLinear → op → QuantizeLinear patterns into int8 kernels at load time.
    """
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return [
        node.name
        for node in graph.node
        if node.op_type in QUANTIZABLE_OP_TYPES and (len(node.input) < 2 or node.input[1] not in dequantized)
    ]


def count_quantized_ops(path: str | os.PathLike) -> dict[str, int]:
    """Op-type counts of an ONNX graph (every op, so float leftovers show up too)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(sorted(Counter(node.op_type for node in graph.node).items()))


def has_int8_ops(op_counts: dict[str, int]) -> bool:
    return any(op_counts.get(op, 0) > 0 for op in _INT8_OP_TYPES)
