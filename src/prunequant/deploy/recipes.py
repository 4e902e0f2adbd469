"""The conversion that reproduces a study's int8 recipe in TFLite: its model, calibration and ranges.

- a post-training recipe (``ptq``): the fp32 parent, the same calibration samples as the ONNX
  Runtime recipe (:func:`~prunequant.quantize.ptq.select_calibration` with the run's seed), its
  observer (MinMax, or Percentile with its percentile) and per-channel setting;
- a quantization-aware recipe (``qat``): the QAT model's trained weights (BatchNorm folded, as it
  trained them) and every activation's scale and zero point as it trained and deployed them in
  ONNX Runtime, converted to TFLite's int8 zero points (ORT's uint8 zero point minus 128).

Partial quantization keeps layers in float: TFLM's int8 kernels cannot run those, and its float
kernels would take float tensors between them, so such a model is not a TFLM int8 deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from prunequant.deploy.convert import ConversionRequest, conversion_form
from prunequant.errors import UserError
from prunequant.quantize.ptq import select_calibration

__all__ = ["OBSERVER_OF_CALIBRATION", "qat_model_and_qparams", "qat_activation_qparams", "recipe_request"]

# ORT's calibration method → the converter's activation observer that reproduces it.
OBSERVER_OF_CALIBRATION = {"MinMax": "minmax", "Percentile": "percentile"}
_UINT8_TO_INT8 = 128  # the same grid: an int8 zero point is ORT's uint8 one minus 128

_aten = torch.ops.aten
# Ops whose output stays on their input's grid in the converter's quantizer (and in ORT's).
_SAME_GRID = {
    _aten.unsqueeze.default,
    _aten.pad.default,
    _aten.constant_pad_nd.default,
    _aten.slice.Tensor,
    _aten.avg_pool2d.default,
    _aten.flatten.using_ints,
    _aten.view.default,
    _aten.reshape.default,
}
_LAYERS = {_aten.conv2d.default, _aten.linear.default}


def qat_activation_qparams(fake_quant, form: nn.Module, example: torch.Tensor) -> dict[str, tuple]:
    """Conversion-form tensor name → (scale, int8 zero point) of each activation the QAT model quantized.

    ``fake_quant`` is the trained :class:`~prunequant.quantize.fake_quant.FakeQuantModel`, ``form``
    the :func:`conversion_form` of the same weights. Layers are matched by module path, adds by
    the quantizers of their inputs; a layer or add whose only reader is a ReLU is quantized after
    the ReLU, as both converters fuse it.
    """
    exported = torch.export.export(form, (example,))
    graph_input = exported.graph_signature.user_inputs[0]
    key_of: dict[str, str] = {}  # every tensor with a quantizer → its key
    observed: dict[str, str] = {}  # the tensors the converter observes → key

    def source(node):
        while node.op == "call_function" and node.target in _SAME_GRID:
            node = node.args[0]
        return node

    def assign(node, key: str) -> None:
        key_of[node.name] = key
        users = list(node.users)
        if len(users) == 1 and users[0].target in (_aten.relu.default, _aten.relu_.default):
            node = users[0]
            key_of[node.name] = key
        observed["input" if node.name == graph_input else node.name] = key

    for node in exported.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target in _LAYERS:
            layer = fake_quant.layers[list(node.meta["nn_module_stack"].values())[-1][0]]
            assign(source(node.args[0]), layer.input)
            assign(node, layer.output)
        elif node.target == _aten.add.Tensor:
            inputs = frozenset(key_of[source(arg).name] for arg in node.args[:2])
            assign(node, fake_quant.adds[inputs])
    qparams = {}
    for name, key in observed.items():
        scale, zero_point = fake_quant.qparams(key)
        qparams[name] = (scale, zero_point - _UINT8_TO_INT8)
    return qparams


def qat_model_and_qparams(checkpoint_path: str | os.PathLike, example: torch.Tensor):
    """(the architecture with the QAT model's trained, folded weights, its activation qparams)."""
    from prunequant.model import ModelSpec, build_model
    from prunequant.quantize.fold import fold_batchnorm
    from prunequant.quantize.qat import load_qat

    payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    if payload.get("reduce_range"):
        raise UserError(
            "a QAT recipe with reduce_range (7-bit weights) has no TFLite form: TFLite's int8 "
            "kernels take full-range weights"
        )
    fake_quant = load_qat(checkpoint_path)
    model = fold_batchnorm(build_model(ModelSpec.from_dict(payload["spec"])))
    model.load_state_dict(fake_quant.float_model().state_dict())
    model.eval()
    return model, qat_activation_qparams(fake_quant, conversion_form(model), example)


def recipe_request(
    recipe: Mapping,
    *,
    parent: nn.Module,
    train_inputs: np.ndarray,
    seed: int,
    qat_checkpoint: str | os.PathLike | None = None,
) -> ConversionRequest:
    """The conversion of one recipe (its settings as in ``quantize.recipes``) for a model of a run."""
    calibration = select_calibration(train_inputs, recipe["calibration_samples"], seed)
    if recipe["method"] == "qat":
        model, qparams = qat_model_and_qparams(qat_checkpoint, torch.from_numpy(calibration[:1]))
        return ConversionRequest(
            model, calibration, per_channel=recipe["per_channel"], activation_qparams=qparams
        )
    if recipe["method"] != "ptq":
        raise UserError(
            f"a {recipe['method']} recipe keeps layers in float, which TFLM's int8 kernels cannot run"
        )
    method = recipe["calibration_method"]
    if method not in OBSERVER_OF_CALIBRATION:
        raise UserError(
            f"calibration_method {method!r} has no TFLite observer: "
            f"use one of {sorted(OBSERVER_OF_CALIBRATION)}"
        )
    return ConversionRequest(
        parent,
        calibration,
        per_channel=recipe["per_channel"],
        observer=OBSERVER_OF_CALIBRATION[method],
        percentile=recipe.get("percentile", 99.999),
    )
