"""Conversion of a quantization-aware trained model to a real int8 ONNX Runtime model.

The trained float weights are exported with :func:`~prunequant.quantize.export.export_onnx`, the
graph a post-training recipe quantizes too, and ORT's ``quantize_static`` runs with
``TensorQuantOverrides`` that set every activation's scale and zero point to the fake-quant
model's (:mod:`prunequant.quantize.fake_quant`); the result is checked against those.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnxruntime import quantization as ortq

from prunequant.quantize.export import export_onnx, quiet, strip_debug_metadata
from prunequant.quantize.fake_quant import FakeQuantModel
from prunequant.quantize.int8_graph import finish_int8_graph_in_file
from prunequant.quantize.ptq import (
    QUANT_FORMATS,
    count_quantized_ops,
    has_int8_ops,
    prepare_for_quantization,
)

__all__ = ["convert_to_int8"]

# ONNX ops that move or select values without changing them: ORT gives their output the
# quantization parameters of their input.
_GRID_PRESERVING_ONNX_OPS = ("Flatten", "Reshape", "Slice", "Squeeze", "Unsqueeze", "Transpose")


class _CalibrationReader(ortq.CalibrationDataReader):
    """Feeds float32 [N, C, T] batches; ORT needs a reader even where every range is overridden."""

    def __init__(self, data: np.ndarray, batch_size: int = 64):
        self._batches = [{"input": data[i : i + batch_size]} for i in range(0, len(data), batch_size)]
        self._index = 0

    def get_next(self) -> dict | None:
        if self._index >= len(self._batches):
            return None
        self._index += 1
        return self._batches[self._index - 1]

    def rewind(self) -> None:
        self._index = 0


def _activation_tensor_keys(model: FakeQuantModel, graph: onnx.GraphProto) -> dict[str, str]:
    """Map every activation tensor of the fp32 ONNX graph that ORT will quantize to its quantizer key.

    Conv / Gemm nodes are matched to layers by their weight initializer's name, which the
    exporter takes from the parameter's name; Add nodes by the quantizers of their inputs.
    """
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    keys: dict[str, str] = {}

    def assign(tensor: str, key: str) -> None:
        if keys.setdefault(tensor, key) != key:
            raise RuntimeError(f"ONNX tensor {tensor!r} maps to quantizers {keys[tensor]!r} and {key!r}")

    def assign_output(node: onnx.NodeProto, key: str) -> None:
        assign(node.output[0], key)
        users = consumers[node.output[0]]
        if len(users) == 1 and users[0].op_type == "Relu":  # ORT removes it; the output takes its range
            assign(users[0].output[0], key)

    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            layer_name = node.input[1].removesuffix(".weight")
            if layer_name not in model.layers:
                raise RuntimeError(
                    f"ONNX {node.op_type} weight {node.input[1]!r} matches no fake-quant layer"
                )
            layer = model.layers[layer_name]
            assign(node.input[0], layer.input)
            assign_output(node, layer.output)
        elif node.op_type == "Add" and all(name in keys for name in node.input):
            input_keys = frozenset(keys[name] for name in node.input)
            if input_keys not in model.adds:
                raise RuntimeError(f"ONNX Add of {list(node.input)} matches no fake-quant add")
            assign_output(node, model.adds[input_keys])
        elif node.op_type in ("AveragePool", "MaxPool") and node.input[0] in keys:
            assign(node.output[0], keys[node.input[0]])
    # The deployment form crops the model input (Slice) and ends in GlobalAveragePool → Reshape:
    # a tensor before such a grid-preserving op is quantized with the one after it.
    producers = {output: node for node in graph.node for output in node.output}
    pending = list(keys)
    while pending:
        producer = producers.get(pending.pop())
        if producer is not None and producer.op_type in _GRID_PRESERVING_ONNX_OPS:
            source = producer.input[0]
            if source not in keys:
                pending.append(source)
            assign(source, keys[producer.output[0]])
    return keys


def _check_deployed_qparams(int8_path: Path, fp32_graph: onnx.GraphProto, expected: dict[str, tuple]) -> int:
    """Every activation scale / zero point in the int8 graph must be the QAT one; returns how many."""
    initializers = {
        init.name: onnx.numpy_helper.to_array(init) for init in onnx.load(str(int8_path)).graph.initializer
    }
    fp32_initializers = {init.name for init in fp32_graph.initializer}
    activations = {name for node in fp32_graph.node for name in node.output} | {
        i.name for i in fp32_graph.input
    }
    checked = 0
    for name, array in initializers.items():
        tensor = name.removesuffix("_scale")
        if not name.endswith("_scale") or tensor not in activations or tensor in fp32_initializers:
            continue
        if tensor not in expected:
            raise RuntimeError(f"the int8 graph quantizes {tensor!r}, which the fake-quant model does not")
        scale, zero_point = expected[tensor]
        deployed = (float(array), int(initializers[f"{tensor}_zero_point"]))
        if deployed != (scale, zero_point):
            raise RuntimeError(f"int8 graph has {deployed} for {tensor!r}, QAT has {(scale, zero_point)}")
        checked += 1
    return checked


def convert_to_int8(
    model: FakeQuantModel,
    int8_path: str | os.PathLike,
    calibration: np.ndarray,
    *,
    quant_format: str,
    n_channels: int,
    length: int,
) -> dict:
    """Export the trained float weights and quantize them with exactly the QAT ranges.

    The fp32 graph is the deployment form's export, as for post-training quantization. Weight
    scales are computed by ORT from the weights, the same way the fake quantizer does; every
    activation's scale and zero point is set from the fake-quant model through
    ``TensorQuantOverrides``. The quantized graph then gets the same rewrites as a post-training
    one (:func:`~prunequant.quantize.int8_graph.finish_int8_graph_in_file`): depthwise convs padded
    for ORT's int8 kernel, float logits from the int8 head, pools channels-last.
    Returns op counts and how many activation tensors were checked.
    """
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"unknown quant_format {quant_format!r}: use one of {sorted(QUANT_FORMATS)}")
    model = model.cpu().eval()
    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        fp32_path, prepared, quantized = (
            Path(tmpdir) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx")
        )
        export_onnx(model.float_model(), fp32_path, n_channels=n_channels, length=length)
        fp32_graph = onnx.load(str(fp32_path)).graph
        tensor_keys = _activation_tensor_keys(model, fp32_graph)
        expected = {tensor: model.qparams(key) for tensor, key in tensor_keys.items()}
        overrides = {
            tensor: [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero_point, np.uint8)}]
            for tensor, (scale, zero_point) in expected.items()
        }
        prepare_for_quantization(fp32_path, prepared)
        with quiet():
            ortq.quantize_static(
                str(prepared),
                str(quantized),
                _CalibrationReader(np.ascontiguousarray(calibration, dtype=np.float32)),
                quant_format=QUANT_FORMATS[quant_format],
                calibrate_method=ortq.CalibrationMethod.MinMax,
                per_channel=model.per_channel,
                reduce_range=model.reduce_range,
                activation_type=ortq.QuantType.QUInt8,  # the pair ptq.quantize_static_int8 deploys
                weight_type=ortq.QuantType.QInt8,
                extra_options={
                    "WeightSymmetric": True,
                    "ActivationSymmetric": False,
                    "TensorQuantOverrides": overrides,
                    # Keep weight scales max|w|/127, as trained, even where the bias scale is tiny.
                    "QDQDisableWeightAdjustForInt32Bias": True,
                },
            )
        strip_debug_metadata(quantized)
        checked = _check_deployed_qparams(quantized, fp32_graph, expected)
        finish_int8_graph_in_file(quantized)  # after the check: it adds no quantization parameter
        os.replace(quantized, int8_path)
    op_counts = count_quantized_ops(int8_path)
    if not has_int8_ops(op_counts):
        raise RuntimeError(f"{int8_path} holds no int8 operators: {op_counts}")
    return {"op_counts": op_counts, "quantized_activation_tensors": checked}
