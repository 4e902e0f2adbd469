"""Conversion of a trained model to a full-int8 ``.tflite`` file for TensorFlow Lite Micro.

The converter is litert-torch (Google's PyTorch-to-LiteRT converter) with its PT2E quantizer,
set up to reproduce ONNX Runtime's static int8 recipes of :mod:`prunequant.quantize.ptq`:

- weights int8 symmetric in [-127, 127], per output channel or per tensor, scale max|w| / 127 (the
  int8 weights come out bit-identical to ORT's);
- activations int8 asymmetric with ranges from the calibration samples: MinMax (ORT's MinMax), or
  the ``percentile`` share of values kept in the middle of each tensor's distribution (ORT's
  Percentile cuts the same share from each side, but from a 2048-bin histogram, so its edges can
  differ by a bin); or fixed scales and zero points for chosen tensors (``activation_qparams``), e.g.
  those a QAT run trained with. ORT's uint8 zero point z is the int8 zero point z - 128 at the same
  scale.
- ops that move values without changing them (padding, pooling, slicing, reshaping) keep their
  input's scale, as ORT and TFLite's kernels require; the global mean gets its own range, as ORT's
  QLinearGlobalAveragePool does (litert-torch's default quantizer would reuse the conv's).

The model is converted in a 4-D form (:func:`conversion_form`): Conv1d as Conv2d over [N, C, 1, T],
the global mean kept 4-D. litert-torch moves 4-D tensors to channels-last and cancels the layout
transposes between such ops; a 3-D mean or reshape makes it transpose the largest activation back
first, which about doubled the arena of the default model (head 10,656 B against 6,064 B).

litert-torch 0.10.0 conflicts with the main environment (litert-converter pins xdsl 0.28, which
pins typing-extensions < 4.13), so it lives in its own environment (``envs/tflm.lock``). This
module imports it only inside the functions that convert; the rest (the 4-D form, the bridge that
runs the conversion in that environment) works in the main environment. Command line, run by the
converter environment's Python::

    python -m prunequant.deploy.convert --checkpoint model.pt --calibration calibration.npy \\
        --output model.tflite [--per-channel] [--observer minmax|percentile] [--record record.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunequant.deploy.bridge import (
    CONVERTER_ENV_COMMAND,
    CONVERTER_ENV_DIR,
    CONVERTER_PYTHON_VARIABLE,
    ERROR_PREFIX,
    ConversionRequest,
    convert_model,
    convert_models,
    converter_python,
)
from prunequant.deploy.conversion_form import conversion_form
from prunequant.errors import UserError

__all__ = [
    "OBSERVERS",
    "CONVERTER_PYTHON_VARIABLE",
    "CONVERTER_ENV_DIR",
    "CONVERTER_ENV_COMMAND",
    "conversion_form",
    "convert",
    "ConversionRequest",
    "convert_model",
    "convert_models",
    "converter_python",
    "main",
]

OBSERVERS = ("minmax", "percentile")
_SMALLEST_SCALE = torch.finfo(torch.float32).tiny  # ORT's only floor on a scale (all-zero tensors)


# --------------------------------------------------------------------------- quantizer (converter env)


def _percentile_observer_class(minmax_observer: type) -> type:
    class PercentileObserver(minmax_observer):
        """Range of the middle ``percentile`` % of every value seen (cut equally from each side)."""

        def __init__(self, *args, percentile: float = 99.999, **kwargs):
            super().__init__(*args, **kwargs)
            self.percentile = percentile
            self.seen: list[np.ndarray] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(x.detach().float().flatten().numpy().copy())
            return super().forward(x)

        def calculate_qparams(self):
            values = np.concatenate(self.seen)
            cut = (100.0 - self.percentile) / 2
            low, high = np.percentile(values, [cut, 100.0 - cut])
            self.min_val.fill_(float(low))
            self.max_val.fill_(float(high))
            return super().calculate_qparams()

    return PercentileObserver


def _quantization_config(per_channel: bool, observer: str, percentile: float):
    """litert-torch's symmetric config with ORT's activation observer and no scale floor of 2^-12."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e.observer import MinMaxObserver, PerChannelMinMaxObserver

    base = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel)
    if observer == "minmax":
        activation_observer = MinMaxObserver.with_args(eps=_SMALLEST_SCALE)
    else:
        activation_observer = _percentile_observer_class(MinMaxObserver).with_args(
            eps=_SMALLEST_SCALE, percentile=percentile
        )
    weight_observer = (PerChannelMinMaxObserver if per_channel else MinMaxObserver).with_args(
        eps=_SMALLEST_SCALE
    )
    activation = dataclasses.replace(base.input_activation, observer_or_fake_quant_ctr=activation_observer)
    weight = dataclasses.replace(base.weight, observer_or_fake_quant_ctr=weight_observer)
    return dataclasses.replace(base, input_activation=activation, output_activation=activation, weight=weight)


def _ort_like_quantizer(config):
    """litert-torch's PT2E quantizer, plus ORT's choices for the ops it leaves unannotated."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    aten = torch.ops.aten
    # Values pass through unchanged or averaged: the output stays on the input's grid.
    same_grid = {aten.pad.default, aten.constant_pad_nd.default, aten.avg_pool2d.default, aten.slice.Tensor}
    own_range = {aten.mean.dim}  # ORT calibrates the global mean's output
    activation_spec = config.input_activation

    class OrtLikeQuantizer(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model):
            super().annotate(model)
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in same_grid | own_range:
                    continue
                source = node.args[0]
                source_annotation = source.meta.get("quantization_annotation")
                quantized_source = source_annotation is not None and source_annotation.output_qspec
                input_spec = SharedQuantizationSpec(source) if quantized_source else activation_spec
                output_spec = (
                    SharedQuantizationSpec((source, node)) if node.target in same_grid else activation_spec
                )
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={source: input_spec}, output_qspec=output_spec, _annotated=True
                )
            return model

    return OrtLikeQuantizer().set_global(config)


def _fix_activation_qparams(prepared: torch.fx.GraphModule, qparams: Mapping[str, Sequence]) -> None:
    """Replace the observer of each named tensor by one that returns the given (scale, int8 zero point)."""
    from torchao.quantization.pt2e.observer import FixedQParamsObserver

    # Activation observers in execution order (weights are observed too, straight from get_attr);
    # the first one observes the model input, which "input" names.
    observed = {
        node.args[0].name: node.target
        for node in prepared.graph.nodes
        if node.op == "call_module"
        and node.target.startswith("activation_post_process")
        and node.args[0].op != "get_attr"
    }
    observed = {"input": next(iter(observed.values())), **observed}
    unknown = sorted(set(qparams) - set(observed))
    if unknown:
        raise UserError(
            f"activation_qparams names {unknown}, not quantized tensors of the model: use {sorted(observed)}"
        )
    replaced = {}
    for name, (scale, zero_point) in qparams.items():
        original = getattr(prepared, observed[name])
        replaced[id(original)] = FixedQParamsObserver(
            scale=float(scale),
            zero_point=int(zero_point),
            dtype=torch.int8,
            qscheme=torch.per_tensor_affine,
            quant_min=-128,
            quant_max=127,
        )
    # A tensor shared by several ops (padding, pooling) has one observer under several names, all
    # replaced (named_children would list the shared one once).
    for attribute, module in list(prepared.named_modules(remove_duplicate=False)):
        if "." not in attribute and id(module) in replaced:
            setattr(prepared, attribute, replaced[id(module)])


_LOWERING_MISSING = re.compile(r"Lowering not found: (\S+)\s.*?While executing %(\w+)", re.DOTALL)


def _conversion_error(error: Exception, exported: torch.export.ExportedProgram) -> UserError:
    """One line naming the module and op that could not be converted, where the error says which."""
    message = str(error)
    missing = _LOWERING_MISSING.search(message)
    if missing:
        op, node_name = missing.groups()
        module = _module_of(exported, node_name)
        return UserError(
            f"cannot convert to TFLite: {module} uses {op}, which litert-torch cannot lower; "
            "replace that op or leave this model out of the tflite deployment"
        )
    first_line = next((line for line in message.splitlines() if line.strip()), type(error).__name__)
    return UserError(f"cannot convert to TFLite: litert-torch failed with: {first_line.strip()[:300]}")


def _module_of(exported: torch.export.ExportedProgram, node_name: str) -> str:
    """``module 'blocks.0.act' (Erfinv)`` for the FX node of that name, else the node's name."""
    base_name = re.sub(r"_\d+$", "", node_name)
    for node in exported.graph.nodes:
        if node.name in (node_name, base_name):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, module_type = list(stack.values())[-1]
                class_name = str(module_type).rsplit(".", 1)[-1].strip("'>")
                return f"module {path or 'the model'!r} ({class_name})"
    return f"the op {node_name!r}"


def convert(
    model: nn.Module,
    calibration: np.ndarray,
    *,
    per_channel: bool,
    observer: str = "minmax",
    percentile: float = 99.999,  # observer "percentile": share of values the range keeps
    activation_qparams: Mapping[str, Sequence] | None = None,  # tensor name -> (scale, int8 zero point)
    deployment_form: bool = True,  # False: convert ``model`` exactly as given
) -> bytes:
    """A full-int8 ``.tflite`` (int8 input and output) of ``model``, calibrated on ``calibration``.

    ``calibration`` is float32 [N, C, T]; the model is converted for batch 1. With
    ``deployment_form`` the model must be a project architecture and is converted in its
    :func:`conversion_form`. ``activation_qparams`` fixes the scale and int8 zero point of the
    named tensors (``input`` for the model input, else the exported conversion form's node names:
    ``conv2d``, ``relu``, ``mean``, ``linear``, ...; a wrong name is answered with the list of
    names); the others are
    calibrated. Needs litert-torch (the converter environment); raises :class:`UserError` with one
    line naming the module and op when the model cannot be converted.
    """
    if observer not in OBSERVERS:
        raise UserError(f"tflite observer {observer!r} is not known: use one of {list(OBSERVERS)}")
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 3 or len(calibration) == 0:
        raise ValueError(f"calibration must be a non-empty [N, C, T] array, got shape {calibration.shape}")
    import litert_torch
    from litert_torch.quantize import quant_config
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    litert_torch.config.show_progress = False
    form = conversion_form(model) if deployment_form else model  # an exported module has no .eval()
    samples = torch.from_numpy(calibration)
    example = (samples[:1],)
    exported = torch.export.export(form, example)
    quantizer = _ort_like_quantizer(_quantization_config(per_channel, observer, percentile))
    try:
        prepared = prepare_pt2e(exported.module(), quantizer)
        with torch.no_grad():
            for sample in samples:
                prepared(sample[None])
        if activation_qparams:
            _fix_activation_qparams(prepared, activation_qparams)
        quantized = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
        edge_model = litert_torch.convert(
            quantized, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
        )
    except UserError:
        raise
    except Exception as error:  # the converter's errors are of many types; each becomes one line
        raise _conversion_error(error, exported) from error
    return bytes(edge_model.model_content())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prunequant.deploy.convert", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a project checkpoint (converted in its deployment form)")
    source.add_argument("--exported", help="a torch.export program (.pt2), converted as it is")
    source.add_argument(
        "--batch",
        help="JSON {name: [arguments of one conversion]}: each converted; errors.json beside it "
        "holds {name: error} of those that could not be",
    )
    parser.add_argument("--calibration", help=".npy float32 [N, C, T]")
    parser.add_argument("--output", help="the .tflite file to write")
    parser.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    parser.add_argument("--observer", choices=OBSERVERS, default="minmax")
    parser.add_argument("--percentile", type=float, default=99.999)
    parser.add_argument("--activation-qparams", help="JSON {tensor name: [scale, int8 zero point]}")
    parser.add_argument("--record", help="JSON record of the conversion to write")
    return parser


def _convert_arguments(args: argparse.Namespace) -> None:
    """One conversion of the command line; a :class:`UserError` says why it could not be made."""
    # Run as ``python -m``, this file is __main__; converting with the module imported under its
    # own name keeps the class paths the .tflite stores as tensor names (bytes of flash) the same.
    from prunequant.deploy.convert import convert

    if not (args.calibration and args.output):
        raise UserError("a conversion needs --calibration and --output")
    if args.checkpoint:
        from prunequant.checkpoint import load_model

        model, deployment_form = load_model(args.checkpoint)[0], True
    else:
        model, deployment_form = torch.export.load(args.exported).module(), False
    qparams = json.loads(Path(args.activation_qparams).read_text()) if args.activation_qparams else None
    calibration = np.load(args.calibration)
    data = convert(
        model,
        calibration,
        per_channel=args.per_channel,
        observer=args.observer,
        percentile=args.percentile,
        activation_qparams=qparams,
        deployment_form=deployment_form,
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    if args.record:
        Path(args.record).write_text(json.dumps(_record(args, len(calibration), len(data)), indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.batch:
        batch = json.loads(Path(args.batch).read_text())
        errors = {}
        for name, arguments in batch.items():
            try:
                _convert_arguments(_parser().parse_args(arguments))
            except UserError as error:
                errors[name] = str(error)
        Path(args.batch).with_name("errors.json").write_text(json.dumps(errors))
        return 0
    try:
        _convert_arguments(args)
    except UserError as error:
        print(f"{ERROR_PREFIX}{error}", file=sys.stderr)
        return 2
    return 0


def _record(args: argparse.Namespace, calibration_samples: int, flash_bytes: int) -> dict:
    from importlib.metadata import version

    return {
        "converter": "litert-torch",
        "litert_torch_version": version("litert-torch"),
        "torch_version": torch.__version__,
        "per_channel": args.per_channel,
        "observer": args.observer,
        "percentile": args.percentile if args.observer == "percentile" else None,
        "fixed_activation_qparams": bool(args.activation_qparams),
        "calibration_samples": calibration_samples,
        "flash_bytes": flash_bytes,
    }


if __name__ == "__main__":
    sys.exit(main())
