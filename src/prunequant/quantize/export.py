"""fp32 ONNX export of a deployment-form model, checked and run once in ONNX Runtime."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxscript import opset18
from onnxscript.function_libs.torch_lib.ops.core import aten_mean_dim
from torch import nn

from prunequant.quantize.onnx_files import quiet, strip_debug_metadata
from prunequant.quantize.runtime import session_options

__all__ = ["DEFAULT_OPSET", "quiet", "export_onnx", "strip_debug_metadata"]

# Every op here, quantized or not, has an ORT CPU kernel at this opset; _mean_over_time writes its ops.
DEFAULT_OPSET = 18

# What torch.onnx.export(dynamo=True) imports at its first call in a process (torch's exporter,
# dynamo, torch.export, onnxscript's torchlib, sympy): about 2 s of a 3.4 s first export here.
# A warm job server (prunequant.workflow.warm_server) imports them once; only imports, nothing that runs.
WARM_START_IMPORTS = (
    "torch.onnx._internal.exporter._compat",
    "torch.onnx._internal.exporter._core",
    "torch.onnx._internal.exporter._torchlib.ops",
    "torch._dynamo",
    "torch._functorch.aot_autograd",
    "torch.export._trace",
    "onnxscript.function_libs.torch_lib.ops",
    "onnxscript.rewriter.onnx_fusions",
    "sympy.combinatorics",
)


def _mean_over_time(self, dim, keepdim: bool = False, dtype: int = -1):
    """``aten.mean.dim`` in ONNX: a mean over the last axis of [N, C, T] as GlobalAveragePool.

    The same values as ReduceMean, but ONNX Runtime runs GlobalAveragePool in int8
    (QLinearGlobalAveragePool, reading the last conv's channels-last output as it is), and
    ReduceMean has no int8 kernel: in front of it the int8 graph would transpose back to
    channels-first and dequantize the whole activation. The deployment form's mean over time is
    written ``x.mean(dim=-1)``: ``adaptive_avg_pool1d(x, 1)`` is decomposed into the same mean before
    any translation sees it. The exporter's optimizer then writes the Flatten as a Reshape to
    [N, C]. Every other mean keeps torchlib's translation.
    """
    if len(self.shape) == 3 and list(dim) in ([-1], [2]) and not keepdim and dtype in (-1, None):
        return opset18.Flatten(opset18.GlobalAveragePool(self), axis=1)
    return aten_mean_dim(self, dim, keepdim, dtype)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    n_channels: int,
    length: int,
) -> Path:
    """Export an eval-mode copy of ``model`` to ONNX with a dynamic batch dimension.

    Input is named ``input`` ([batch, n_channels, length], float32), output ``logits``. A mean
    over time becomes a GlobalAveragePool (:func:`_mean_over_time`). The file is checked with
    ``onnx.checker`` and run once in ORT at batch 1 and 64.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().float().eval()
    example = torch.zeros(2, n_channels, length)
    # The forward argument is named ``x``; keying by position keeps this model-agnostic.
    dynamic_shapes = ({0: torch.export.Dim("batch")},)
    tmp = path.with_name(path.name + ".tmp")
    with quiet():
        torch.onnx.export(
            model,
            (example,),
            tmp,
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=dynamic_shapes,
            opset_version=DEFAULT_OPSET,
            custom_translation_table={torch.ops.aten.mean.dim: _mean_over_time},
            external_data=False,
            verbose=False,
        )
    strip_debug_metadata(tmp)
    onnx.checker.check_model(onnx.load(tmp), full_check=True)
    session = ort.InferenceSession(str(tmp), session_options(), providers=["CPUExecutionProvider"])
    for batch in (1, 64):
        (logits,) = session.run(["logits"], {"input": np.zeros((batch, n_channels, length), np.float32)})
        if logits.shape[0] != batch:
            raise RuntimeError(f"exported model returned batch {logits.shape[0]} for input batch {batch}")
    os.replace(tmp, path)
    return path
