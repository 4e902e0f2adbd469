"""Fake quantization: a deployment-form model that computes what its int8 ONNX Runtime graph computes.

The fake-quant model mirrors, tensor by tensor, the int8 graph ORT's static quantizer builds
from the deployment form (:func:`~prunequant.quantize.fold.deployment_model`):

- every Conv1d / Linear weight is int8 symmetric, per output channel or per tensor, with the
  scale ORT computes from the weights (max|w| / 127, in float64, stored as float32);
- its bias is int32 with scale input_scale * weight_scale, as ORT quantizes it;
- every activation ORT quantizes is uint8 asymmetric: the model input and every other tensor
  that feeds a Conv / Gemm / Add, and every Conv / Gemm / Add output. A ReLU that is the only
  consumer of such an output is fused, as ORT removes it: the output is quantized after the ReLU.
  A pooling output is requantized on its input's grid; cropping, zero padding and reshaping keep
  the grid, so a tensor they make is quantized before them, as ORT quantizes their input;
  other ops (the global mean) run in float on dequantized values, as in the int8 graph.

Fake quantization uses torch's built-in ``fake_quantize_per_tensor_affine`` and
``fake_quantize_per_channel_affine``: their backward is the straight-through estimator, passing
the gradient where the input lies inside the clipping range and zero outside. Ranges are not
learned: learnable ranges (LSQ/PACT) would need a custom autograd function, and a min/max range
is what the deployed quantizer encodes anyway. Activation ranges start from min/max over
calibration samples of the float model (what MinMax post-training calibration gives), follow an
exponential moving average of each training batch's min/max, and are frozen for the last
epoch, so the weights finish training against the exact ranges they are deployed with.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from prunequant.quantize.fold import crop_to_steps_used

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
    "LayerQuantizers",
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
_GRID_PRESERVING_FUNCTIONS = (
    operator.getitem,
    crop_to_steps_used,
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
)
_GRID_PRESERVING_METHODS = ("contiguous", "view", "reshape", "flatten", "squeeze", "unsqueeze")
_GRID_PRESERVING_MODULES = (nn.Identity, nn.Flatten)


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
        module = modules[node.target]
        # Zero lies on every activation grid (its range always contains 0), so zero padding adds
        # grid values; the exporter folds it into the conv, which ORT pads with the zero point.
        zero_padding = isinstance(module, nn.ConstantPad1d) and module.value == 0
        return zero_padding or isinstance(module, _GRID_PRESERVING_MODULES)
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
        """Quantize ``value``, or the tensor a grid-preserving op made it from: ORT quantizes the input
        of a crop, a zero padding or a reshape, which then moves its integers (a residual block's
        padded conv and its skip read one quantized input)."""
        if self.grid.get(value) is None:
            source = value.args[0] if value.args and _preserves_grid(value, self.modules) else None
            if isinstance(source, fx.Node):
                self.grid[value] = self._quantize(source)
            else:
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
