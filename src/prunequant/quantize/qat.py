"""Quantization-aware training (QAT) that deploys as a real int8 model in ONNX Runtime.

The fake-quant model mirrors, tensor by tensor, the int8 graph ORT's static quantizer builds
from the deployment form (:func:`~prunequant.quantize.fold.deployment_model`):

- every Conv1d / Linear weight is int8 symmetric, per output channel or per tensor, with the
  scale ORT computes from the weights (max|w| / 127, in float64, stored as float32);
- its bias is int32 with scale input_scale * weight_scale, as ORT quantizes it;
- every activation ORT quantizes is uint8 asymmetric: the model input and every other tensor
  that feeds a Conv / Gemm / Add, and every Conv / Gemm / Add output. A ReLU that is the only
  consumer of such an output is fused, as ORT removes it: the output is quantized after the ReLU.
  A pooling output is requantized on its input's grid; slicing and reshaping keep the grid;
  other ops (the global mean) run in float on dequantized values, as in the int8 graph.

Fake quantization uses torch's built-in ``fake_quantize_per_tensor_affine`` and
``fake_quantize_per_channel_affine``: their backward is the straight-through estimator, passing
the gradient where the input lies inside the clipping range and zero outside. Ranges are not
learned: learnable ranges (LSQ/PACT) would need a custom autograd function, and a min/max range
is what the deployed quantizer encodes anyway. Activation ranges start from min/max over
calibration samples of the float model (what MinMax post-training calibration gives), follow an
exponential moving average of each training batch's min/max, and are frozen for the last
epoch, so the weights finish training against the exact ranges they are deployed with.

Conversion exports the trained float weights with :func:`~prunequant.quantize.export.export_onnx`
and runs ORT's ``quantize_static`` with ``TensorQuantOverrides`` that set every activation's
scale and zero point to the QAT ones; the result is checked against the fake-quant model.
"""

from __future__ import annotations

import copy
import json
import math
import operator
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.fx as fx
from onnxruntime import quantization as ortq
from torch import nn
from torch.nn import functional as F

from prunequant.checkpoint import atomic_torch_save, load_model
from prunequant.data import load_dataset
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
from prunequant.jobs import write_json
from prunequant.model import ModelSpec, build_model, spec_of
from prunequant.quantize.agreement import agreement
from prunequant.quantize.export import export_onnx, quiet, strip_debug_metadata
from prunequant.quantize.fold import deployment_model
from prunequant.quantize.int8_graph import finish_int8_graph_in_file, int8_friendly_graph
from prunequant.quantize.ptq import (
    QUANT_FORMATS,
    count_quantized_ops,
    has_int8_ops,
    prepare_for_quantization,
    select_calibration,
)
from prunequant.quantize.runtime import OnnxClassifier

__all__ = [
    "ACTIVATION_QMIN",
    "ACTIVATION_QMAX",
    "WEIGHT_QMAX",
    "WEIGHT_QMAX_REDUCED",
    "RANGE_AVERAGING_CONSTANT",
    "activation_qparams",
    "weight_qparams",
    "ActivationFakeQuant",
    "FakeQuantLayer",
    "FakeQuantModel",
    "save_qat",
    "load_qat",
    "convert_to_int8",
    "run_qat",
]

ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 255  # uint8 asymmetric activations (ORT QuantType.QUInt8)
WEIGHT_QMAX = 127  # int8 symmetric weights use [-127, 127], as ORT's WeightSymmetric does
# ORT's reduce_range keeps weights in [-64, 64] (7 bits): MLAS's AVX2 u8s8 kernels add pairs of
# uint8 x int8 products in int16 with saturation, which full-range weights overflow; VNNI does not.
WEIGHT_QMAX_REDUCED = 64
RANGE_AVERAGING_CONSTANT = 0.01  # EMA weight of a batch's min/max (torch's and ORT's moving-average default)
_INT32 = torch.iinfo(torch.int32)
_TINY_SCALE = torch.finfo(torch.float32).tiny  # ORT replaces a smaller scale by 1 (an all-zero tensor)

_LAYER_TYPES = (nn.Conv1d, nn.Linear)
_POOL_MODULES = (nn.AvgPool1d, nn.MaxPool1d)
_POOL_FUNCTIONS = (F.avg_pool1d, F.max_pool1d)
_RELU_FUNCTIONS = (F.relu, torch.relu)
_ADD_FUNCTIONS = (operator.add, torch.add)
# Ops that move or select values without changing them: their output stays on the input's grid.
_GRID_PRESERVING_FUNCTIONS = (operator.getitem, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze)
_GRID_PRESERVING_METHODS = ("contiguous", "view", "reshape", "flatten", "squeeze", "unsqueeze")
_GRID_PRESERVING_MODULES = (nn.Identity, nn.Flatten)
# The same in ONNX: ORT gives their output the quantization parameters of their input.
_GRID_PRESERVING_ONNX_OPS = ("Flatten", "Reshape", "Slice", "Squeeze", "Unsqueeze", "Transpose")


# --------------------------------------------------------------------------- quantization parameters


def activation_qparams(min_val: torch.Tensor, max_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 asymmetric scale (float32) and zero point (int32) of the range [min_val, max_val].

    The arithmetic is ORT's ``compute_scale_zp``: the range is widened to contain 0, scale and
    zero point are computed in float64, and the scale is stored as float32.
    """
    rmin = min_val.detach().double().clamp(max=0.0)
    rmax = max_val.detach().double().clamp(min=0.0)
    scale = (rmax - rmin) / (ACTIVATION_QMAX - ACTIVATION_QMIN)
    degenerate = scale < _TINY_SCALE
    zero_point = torch.round(ACTIVATION_QMIN - rmin / torch.where(degenerate, 1.0, scale))
    scale = torch.where(degenerate, 1.0, scale)
    zero_point = torch.where(degenerate, 0.0, zero_point)
    return scale.float(), zero_point.int()


def weight_qmax(reduce_range: bool) -> int:
    return WEIGHT_QMAX_REDUCED if reduce_range else WEIGHT_QMAX


def weight_qparams(
    weight: torch.Tensor, per_channel: bool, reduce_range: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 symmetric scale (float32, one per output channel or a scalar) and zero point (int32, 0).

    As ORT: scale = 2 * max|w| / (2 * qmax) computed in float64 and stored as float32, 1 where
    max|w| = 0; qmax is 127, or 64 with ``reduce_range``.
    """
    magnitude = weight.detach().abs()
    absmax = magnitude.flatten(1).amax(dim=1) if per_channel else magnitude.max()
    scale = absmax.double() * 2 / (2 * weight_qmax(reduce_range))
    scale = torch.where(scale < _TINY_SCALE, 1.0, scale).float()
    return scale, torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)


class ActivationFakeQuant(nn.Module):
    """Fake uint8 quantization of one activation tensor, with an observed min/max range.

    Modes: ``calibrating`` (set by :meth:`FakeQuantModel.calibrate`) records the true min/max
    and passes values through unchanged; in training, while ``observing``, the range follows an
    EMA of each batch's min/max; otherwise the range is fixed. ``scale`` and ``zero_point``
    always hold the parameters of the current range.
    """

    def __init__(self):
        super().__init__()
        # Starting at 0 is harmless: the quantized range always contains 0.
        self.register_buffer("min_val", torch.zeros(()))
        self.register_buffer("max_val", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int32))
        self.register_buffer("observing", torch.ones((), dtype=torch.bool))
        self.calibrating = False

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        batch_min, batch_max = torch.aminmax(x.detach())
        if self.calibrating:
            self.min_val.copy_(torch.minimum(self.min_val, batch_min))
            self.max_val.copy_(torch.maximum(self.max_val, batch_max))
        else:
            self.min_val.lerp_(batch_min, RANGE_AVERAGING_CONSTANT)
            self.max_val.lerp_(batch_max, RANGE_AVERAGING_CONSTANT)
        self.update_qparams()

    @torch.no_grad()
    def update_qparams(self) -> None:
        scale, zero_point = activation_qparams(self.min_val, self.max_val)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self._observe(x)
            return x
        if self.training and bool(self.observing):
            self._observe(x)
        return self.requantize(x)

    def requantize(self, x: torch.Tensor) -> torch.Tensor:
        """Round ``x`` to this tensor's grid without observing it (a pooled quantized tensor)."""
        if self.calibrating:
            return x
        return torch.fake_quantize_per_tensor_affine(
            x, self.scale, self.zero_point, ACTIVATION_QMIN, ACTIVATION_QMAX
        )


def _fake_quantize_bias(bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int32 rounding of the bias on ``scale`` with an identity (straight-through) gradient.

    Written out because the int32 range is far wider than any bias/scale here, so nothing clips.
    """
    quantized = torch.round(bias / scale).clamp(_INT32.min, _INT32.max) * scale
    return bias + (quantized - bias).detach()


class FakeQuantLayer(nn.Module):
    """A Conv1d or Linear whose weight is fake-quantized to int8 and bias to int32.

    ``forward`` takes the scale of its (already fake-quantized) input, which sets the bias scale.
    """

    def __init__(self, layer: nn.Conv1d | nn.Linear, per_channel: bool, reduce_range: bool = False):
        super().__init__()
        self.layer = layer
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.calibrating = False

    def weight_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        return weight_qparams(self.layer.weight, self.per_channel, self.reduce_range)

    def forward(self, x: torch.Tensor, input_scale: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            return self.layer(x)
        scale, zero_point = self.weight_qparams()
        weight, qmax = self.layer.weight, weight_qmax(self.reduce_range)
        if self.per_channel:
            weight = torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, -qmax, qmax)
        else:
            weight = torch.fake_quantize_per_tensor_affine(weight, scale, zero_point, -qmax, qmax)
        bias = self.layer.bias
        if bias is not None:
            bias = _fake_quantize_bias(bias, input_scale * scale)
        if isinstance(self.layer, nn.Conv1d):
            return self.layer._conv_forward(x, weight, bias)
        return F.linear(x, weight, bias)


# --------------------------------------------------------------------------- graph rewriting


@dataclass(frozen=True)
class LayerQuantizers:
    """Keys of the activation quantizers around one layer (ONNX Conv / Gemm)."""

    input: str
    output: str


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target == "relu"


def _is_add(node: fx.Node) -> bool:
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target == "add"
    )
    return is_add and all(isinstance(arg, fx.Node) for arg in node.args[:2])


def _is_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _POOL_MODULES)
    return node.op == "call_function" and node.target in _POOL_FUNCTIONS


def _preserves_grid(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _GRID_PRESERVING_MODULES)
    if node.op == "call_function":
        return node.target in _GRID_PRESERVING_FUNCTIONS
    return node.op == "call_method" and node.target in _GRID_PRESERVING_METHODS


class _FakeQuantRewriter:
    """Inserts activation quantizers into a traced deployment model where ORT quantizes tensors."""

    def __init__(self, module: fx.GraphModule, per_channel: bool, reduce_range: bool):
        self.module = module
        self.graph = module.graph
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.modules = dict(module.named_modules())
        self.grid: dict[fx.Node, str] = {}  # value → key of the quantizer whose grid it lies on
        self.fused_relus: set[fx.Node] = set()
        self.layers: dict[str, LayerQuantizers] = {}
        self.adds: dict[frozenset[str], str] = {}  # input quantizer keys → output quantizer key

    def rewrite(self) -> None:
        for node in list(self.graph.nodes):
            if node in self.fused_relus:
                continue
            if node.op == "call_module" and isinstance(self.modules[node.target], _LAYER_TYPES):
                self._rewrite_layer(node)
            elif _is_add(node):
                keys = frozenset(self._quantize(arg) for arg in node.args[:2])
                self.adds[keys] = self._quantize_output(node)
            elif _is_pool(node, self.modules) and self.grid.get(node.args[0]) is not None:
                self._requantize_like_input(node)
            elif node.op != "output" and node.args and _preserves_grid(node, self.modules):
                if self.grid.get(node.args[0]) is not None:
                    self.grid[node] = self.grid[node.args[0]]
        self.graph.lint()
        self.module.recompile()

    def _add_quantizer(self, value: fx.Node) -> tuple[str, fx.Node]:
        """Quantize ``value`` for all its consumers, as ORT quantizes a tensor once."""
        key = value.name
        self.module.add_submodule(f"activation_quantizers.{key}", ActivationFakeQuant())
        with self.graph.inserting_after(value):
            quantized = self.graph.call_module(f"activation_quantizers.{key}", (value,))
        value.replace_all_uses_with(quantized, delete_user_cb=lambda user: user is not quantized)
        self.grid[value] = self.grid[quantized] = key
        return key, quantized

    def _quantize(self, value: fx.Node) -> str:
        if self.grid.get(value) is None:
            self._add_quantizer(value)
        return self.grid[value]

    def _quantize_output(self, node: fx.Node) -> str:
        """Quantize a layer's or add's output, after the ReLU when that is its only consumer."""
        users = list(node.users)
        if len(users) == 1 and _is_relu(users[0], self.modules):
            self.fused_relus.add(users[0])
            node = users[0]
        key, _ = self._add_quantizer(node)
        return key

    def _rewrite_layer(self, node: fx.Node) -> None:
        input_key = self._quantize(node.args[0])
        layer = self.modules[node.target]
        self.module.add_submodule(node.target, FakeQuantLayer(layer, self.per_channel, self.reduce_range))
        with self.graph.inserting_before(node):
            input_scale = self.graph.get_attr(f"activation_quantizers.{input_key}.scale")
        node.args = (node.args[0], input_scale)
        self.layers[node.target] = LayerQuantizers(input=input_key, output=self._quantize_output(node))

    def _requantize_like_input(self, node: fx.Node) -> None:
        key = self.grid[node.args[0]]
        with self.graph.inserting_after(node):
            quantizer = self.graph.get_attr(f"activation_quantizers.{key}")
        with self.graph.inserting_after(quantizer):
            requantized = self.graph.call_method("requantize", (quantizer, node))
        node.replace_all_uses_with(requantized, delete_user_cb=lambda user: user is not requantized)
        self.grid[node] = self.grid[requantized] = key


class FakeQuantModel(nn.Module):
    """A deployment-form model with fake int8 quantization where the deployed int8 graph has it.

    ``reduce_range``: 7-bit weights ([-64, 64]) for CPUs without VNNI, as ORT's option of that
    name. ``freeze_after_steps``: optimizer steps after which activation ranges stop following
    the training batches (None: never). Call :meth:`after_step` after every optimizer step.
    """

    def __init__(
        self,
        deployed: nn.Module,
        *,
        per_channel: bool,
        reduce_range: bool = False,
        freeze_after_steps: int | None = None,
    ):
        super().__init__()
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.freeze_after_steps = freeze_after_steps
        network = fx.symbolic_trace(copy.deepcopy(deployed).cpu().eval())
        # The float graph, kept to rebuild the plain model around the trained layers for export.
        self._float_graph = copy.deepcopy(network.graph)
        rewriter = _FakeQuantRewriter(network, per_channel, reduce_range)
        rewriter.rewrite()
        self.network = network
        self.layers: dict[str, LayerQuantizers] = rewriter.layers
        self.adds: dict[frozenset[str], str] = rewriter.adds
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @property
    def activation_quantizers(self) -> dict[str, ActivationFakeQuant]:
        return dict(self.network.activation_quantizers.named_children())

    def fake_quant_layer(self, name: str) -> FakeQuantLayer:
        return self.network.get_submodule(name)

    def _set_calibrating(self, calibrating: bool) -> None:
        for module in self.modules():
            if isinstance(module, ActivationFakeQuant | FakeQuantLayer):
                module.calibrating = calibrating

    @torch.no_grad()
    def calibrate(self, inputs: torch.Tensor, batch_size: int = 256) -> None:
        """Set every activation range to the min/max of the float model over ``inputs``."""
        if len(inputs) == 0:
            raise ValueError("calibration needs at least one sample")
        was_training = self.training
        self.eval()
        for quantizer in self.activation_quantizers.values():
            quantizer.min_val.zero_()
            quantizer.max_val.zero_()
        self._set_calibrating(True)
        try:
            for start in range(0, len(inputs), batch_size):
                self(inputs[start : start + batch_size])
        finally:
            self._set_calibrating(False)
        for quantizer in self.activation_quantizers.values():
            quantizer.update_qparams()
        self.train(was_training)

    def freeze_ranges(self) -> None:
        for quantizer in self.activation_quantizers.values():
            quantizer.observing.fill_(False)

    def after_step(self) -> None:
        """Count an optimizer step; freeze the ranges once ``freeze_after_steps`` is reached."""
        self.optimizer_steps += 1
        if self.freeze_after_steps is not None and int(self.optimizer_steps) >= self.freeze_after_steps:
            self.freeze_ranges()

    def float_model(self) -> fx.GraphModule:
        """The plain float model (deployment form) with this model's current weights, shared."""
        modules = {}
        for node in self._float_graph.nodes:
            if node.op == "call_module":
                module = self.network.get_submodule(node.target)
                modules[node.target] = module.layer if isinstance(module, FakeQuantLayer) else module
        return fx.GraphModule(modules, copy.deepcopy(self._float_graph)).eval()

    def qparams(self, key: str) -> tuple[float, int]:
        """(scale, zero point) of one activation quantizer."""
        quantizer = self.activation_quantizers[key]
        return float(quantizer.scale), int(quantizer.zero_point)


# --------------------------------------------------------------------------- checkpoints


def save_qat(model: FakeQuantModel, path: str | os.PathLike, spec: ModelSpec, metadata: dict) -> None:
    """The fp32 architecture spec, the fake-quant state dict and settings; loads with weights_only."""
    payload = {
        "spec": spec.to_dict(),
        "per_channel": model.per_channel,
        "reduce_range": model.reduce_range,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "metadata_json": json.dumps(metadata),
    }
    atomic_torch_save(payload, path)


def load_qat(checkpoint_path: str | os.PathLike) -> FakeQuantModel:
    """The fake-quant model saved by :func:`run_qat`, in eval mode on the CPU."""
    payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    deployed = deployment_model(build_model(ModelSpec.from_dict(payload["spec"])))
    model = FakeQuantModel(
        deployed, per_channel=bool(payload["per_channel"]), reduce_range=bool(payload["reduce_range"])
    )
    model.load_state_dict(payload["state_dict"])
    return model.eval()


# --------------------------------------------------------------------------- conversion to int8


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
    # int8_friendly_graph moves the time crop to the model input and ends in GlobalAveragePool →
    # Flatten: a tensor before such a grid-preserving op is quantized with the one after it.
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

    The fp32 graph first goes through :func:`~prunequant.quantize.int8_graph.int8_friendly_graph`, as
    for post-training quantization (the same function; the crop moves to the input, the mean
    becomes an int8 GlobalAveragePool). Weight scales are computed by ORT from the weights, the
    same way the fake quantizer does; every activation's scale and zero point is set from the
    fake-quant model through ``TensorQuantOverrides``. The quantized graph then gets the same
    rewrites as a post-training one (:func:`~prunequant.quantize.int8_graph.finish_int8_graph_in_file`):
    depthwise convs padded for ORT's int8 kernel, float logits from the int8 head, pools
    channels-last.
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
        onnx.save(int8_friendly_graph(onnx.load(str(fp32_path))), str(fp32_path))
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


# --------------------------------------------------------------------------- the QAT stage


def _check_settings(epochs, lr, batch_size, weight_decay, quant_format, calibration_samples) -> None:
    if quant_format not in QUANT_FORMATS:
        raise UserError(f"qat quant_format {quant_format!r} is not known: use one of {sorted(QUANT_FORMATS)}")
    if epochs < 1 or batch_size < 1:
        raise UserError(f"qat epochs ({epochs}) and batch_size ({batch_size}) must be at least 1: raise them")
    if not lr > 0 or weight_decay < 0:
        raise UserError(f"qat lr ({lr}) must be > 0 and weight_decay ({weight_decay}) >= 0: fix the setting")
    if calibration_samples is not None and calibration_samples < 1:
        raise UserError(
            f"qat calibration_samples is {calibration_samples}: use >= 1, or null for all training samples"
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
    seed: int,
    device: str,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    per_channel: bool,
    quant_format: str,
    calibration_samples: int | None,
    reduce_range: bool = False,
    checkpoint_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    history_path: str | os.PathLike,
    record_path: str | os.PathLike,
    resume_path: str | os.PathLike,
) -> dict:
    """Quantization-aware training of an fp32 checkpoint, then conversion to an int8 ORT model.

    ``reduce_range`` (7-bit weights) is for int8 CPUs without VNNI, as in ``ptq.quantize_static_int8``.
    Ranges start from ``calibration_samples`` seeded training samples (None: all); training uses
    Adam at a constant ``lr``, keeps the best validation accuracy, and resumes from
    ``resume_path``. Writes the fake-quant checkpoint, the history CSV, the int8 ONNX model and
    a record JSON (returned). Test inputs are only used to report how closely the deployed int8
    model agrees with the fake-quant one; nothing is chosen on them.
    """
    _check_settings(epochs, lr, batch_size, weight_decay, quant_format, calibration_samples)
    if not Path(model_path).is_file():
        raise UserError(f"fp32 checkpoint {model_path} does not exist: train or fine-tune that model first")
    fp32_model, _ = load_model(model_path)
    spec = spec_of(fp32_model)
    dataset = load_dataset(dataset_path)
    n_train = len(dataset.X_train)
    calibration = select_calibration(dataset.X_train, calibration_samples or n_train, seed)

    seed_everything(seed)
    steps_per_epoch = math.ceil(n_train / batch_size)
    model = FakeQuantModel(
        deployment_model(fp32_model),
        per_channel=per_channel,
        reduce_range=reduce_range,
        freeze_after_steps=(epochs - 1) * steps_per_epoch,
    )
    model.calibrate(torch.from_numpy(calibration))
    if epochs == 1:  # the last epoch is the only one: train against the calibrated ranges throughout
        model.freeze_ranges()
    x_val, y_val = torch.from_numpy(dataset.X_val), torch.from_numpy(dataset.y_val)
    _, calibrated_val_accuracy, _ = evaluate(model, x_val, y_val, batch_size=256)

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        lr_schedule="none",
        lr_step_epochs=1,
        seed=seed,
    )
    settings = {
        "training": asdict(config),
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "quant_format": quant_format,
        "calibration_samples": int(len(calibration)),
        "range_update": f"EMA of batch min/max ({RANGE_AVERAGING_CONSTANT}), frozen in the last epoch",
    }
    target = pick_device(device)
    print(f"Quantization-aware training on {target} ({torch.get_num_threads()} CPU threads)")
    started = time.perf_counter()
    result = train(
        model,
        (torch.from_numpy(dataset.X_train), torch.from_numpy(dataset.y_train)),
        (x_val, y_val),
        config,
        device=target,
        best_path=checkpoint_path,
        resume_path=resume_path,
        job_fingerprint=fingerprint(settings, files=(str(dataset_path), str(model_path))),
        checkpoint_metadata={"settings": settings, "classes": list(dataset.classes)},
        after_step=model.after_step,
        save_best=lambda trained, path, metadata: save_qat(trained, path, spec, metadata),
    )
    train_seconds = time.perf_counter() - started
    write_history(result.history, history_path)

    model = model.cpu().eval()
    conversion = convert_to_int8(
        model,
        onnx_path,
        calibration,
        quant_format=quant_format,
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
        "epochs": epochs,
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
