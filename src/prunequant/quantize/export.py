"""fp32 ONNX export of a deployment-form model, checked and run once in ONNX Runtime."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from prunequant.quantize.onnx_files import quiet, strip_debug_metadata
from prunequant.quantize.runtime import session_options

__all__ = ["DEFAULT_OPSET", "quiet", "export_onnx", "strip_debug_metadata"]

DEFAULT_OPSET = 18  # every op here, quantized or not, has an ORT CPU kernel at this opset

# What torch.onnx.export(dynamo=True) imports at its first call in a process (torch's exporter,
# dynamo, torch.export, onnxscript's torchlib, sympy): about 2 s of a 3.4 s first export here.
# A warm job server (prunequant.warmstart) imports them once; only imports, nothing that runs.
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


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    n_channels: int,
    length: int,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export an eval-mode copy of ``model`` to ONNX with a dynamic batch dimension.

    Input is named ``input`` ([batch, n_channels, length], float32), output ``logits``.
    The file is checked with ``onnx.checker`` and run once in ORT at batch 1 and 64.
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
            opset_version=opset,
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
