"""Deployment and int8 quantization through ONNX and ONNX Runtime, one job per module.

The path is: the deployment form in torch, BatchNorm folded and the last pooling a crop
(:mod:`.fold`) → export fp32 ONNX (:mod:`.export`) → ORT pre-process and ``quantize_static``
with a calibration set (:mod:`.ptq`; partial quantization :mod:`.partial`; the recipe methods by
name :mod:`.recipes`; quantization-aware training's model :mod:`.qat`, with :mod:`.fake_quant` and
:mod:`.qat_convert`; its stage is :mod:`prunequant.stages.qat`) → int8-only rewrites of
the quantized graph (:mod:`.int8_graph`) → run in ONNX Runtime (:mod:`.runtime`). The fp32
model and its int8 child are exported from the same form, so they differ only by quantization.
ONNX is a stable exchange format and ORT's quantizer and int8 kernels (QLinearConv, QGemm, ...)
do not depend on torch internals, so this survives torch releases where
``torch.ao.quantization`` (deprecated) would not.

Names are re-exported lazily: importing the package loads no submodule, so a job
that imports one module depends on that module only (see :mod:`prunequant.workflow.code_digests`).
"""

from __future__ import annotations

from prunequant.lazy import lazy_exports

# public name → the module that defines it
_EXPORTS = {
    "DEFAULT_OPSET": "prunequant.quantize.export",
    "export_onnx": "prunequant.quantize.export",
    "DeploymentForm": "prunequant.quantize.fold",
    "deployment_model": "prunequant.quantize.fold",
    "fold_batchnorm": "prunequant.quantize.fold",
    "CALIBRATION_METHODS": "prunequant.quantize.ptq",
    "QUANT_FORMATS": "prunequant.quantize.ptq",
    "count_quantized_ops": "prunequant.quantize.ptq",
    "has_int8_ops": "prunequant.quantize.ptq",
    "quantize_static_int8": "prunequant.quantize.ptq",
    "select_calibration": "prunequant.quantize.ptq",
    "OnnxClassifier": "prunequant.quantize.runtime",
    "FakeQuantModel": "prunequant.quantize.fake_quant",
    "convert_to_int8": "prunequant.quantize.qat_convert",
    "load_qat": "prunequant.quantize.qat",
    "save_qat": "prunequant.quantize.qat",
    "quantize_by_recipe": "prunequant.quantize.recipes",
    "quantize_partial": "prunequant.quantize.partial",
    "float_nodes_of": "prunequant.quantize.ptq",
    "pad_depthwise_channels": "prunequant.quantize.int8_graph",
    "float_logits": "prunequant.quantize.int8_graph",
    "channels_last_global_pools": "prunequant.quantize.int8_graph",
    "finish_int8_graph_in_file": "prunequant.quantize.int8_graph",
    "quantizable_nodes": "prunequant.quantize.ptq",
    "quantize_ptq": "prunequant.quantize.ptq",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
