"""Post-training static int8 quantization through ONNX and ONNX Runtime.

The path is: fold BatchNorm away in torch → export fp32 ONNX → ORT pre-process
→ ORT ``quantize_static`` with a calibration set. ONNX is a stable exchange
format and ORT's quantizer and int8 kernels (QLinearConv, QGemm, ...) do not
depend on torch internals, so this survives torch releases where
``torch.ao.quantization`` (deprecated) would not.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime import quantization as ortq
from torch import nn

from prunequant.model import SeparableCNN

__all__ = [
    "QUANT_FORMATS",
    "CALIBRATION_METHODS",
    "fold_batchnorm",
    "deployment_model",
    "export_onnx",
    "quantize_static_int8",
    "select_calibration",
    "quantize_onnx_model",
    "count_quantized_ops",
    "has_int8_ops",
    "OnnxClassifier",
]

QUANT_FORMATS = {"QOperator": ortq.QuantFormat.QOperator, "QDQ": ortq.QuantFormat.QDQ}
CALIBRATION_METHODS = {
    "MinMax": ortq.CalibrationMethod.MinMax,
    "Entropy": ortq.CalibrationMethod.Entropy,
    "Percentile": ortq.CalibrationMethod.Percentile,
}
DEFAULT_OPSET = 18  # every op here, quantized or not, has an ORT CPU kernel at this opset

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


# --------------------------------------------------------------------------- BatchNorm folding


def _bn_affine(norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = scale * x + shift, in float64 to keep the fold exact."""
    var = norm.running_var.double()
    mean = norm.running_mean.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(var)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + norm.eps)
    return scale, beta - mean * scale


def _bias64(layer: nn.Conv1d | nn.Linear, n: int) -> torch.Tensor:
    return layer.bias.double() if layer.bias is not None else torch.zeros(n, dtype=torch.float64)


def _set_weight_and_bias(layer: nn.Conv1d | nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.empty(bias.shape, dtype=layer.weight.dtype))
        layer.bias.copy_(bias)


def _absorb_into_depthwise(conv: nn.Conv1d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    # Valid only without padding: a zero-padded tap would see 0, not the shift, so the
    # shift would no longer contribute exactly shift[c] * sum(taps) to every output step.
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    if conv.padding not in ((0,), 0) or not depthwise:
        raise ValueError("BatchNorm can fold only into an unpadded depthwise Conv1d")
    weight = conv.weight.double()  # [C, 1, k]
    bias = _bias64(conv, conv.out_channels) + shift * weight.sum(dim=(1, 2))
    _set_weight_and_bias(conv, weight * scale[:, None, None], bias)


def _absorb_into_linear(head: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> None:
    weight = head.weight.double()  # [classes, C]
    bias = _bias64(head, head.out_features) + weight @ shift
    _set_weight_and_bias(head, weight * scale[None, :], bias)


def fold_batchnorm(model: SeparableCNN) -> SeparableCNN:
    """Return an eval-mode copy with every ``block.norm`` folded away (replaced by Identity).

    BatchNorm follows ReLU, so it cannot fold into the conv before it. It is a per-channel
    affine map, and AvgPool1d(2) and the global mean are linear per channel, so the affine
    moves forward unchanged into whatever consumes the block: the next block's depthwise
    conv or, after the last block, the Linear head. The result computes the same function.
    """
    folded = copy.deepcopy(model).eval()
    blocks = list(folded.blocks)
    for index, block in enumerate(blocks):
        if isinstance(block.norm, nn.Identity):
            continue
        scale, shift = _bn_affine(block.norm)
        if index + 1 < len(blocks):
            _absorb_into_depthwise(blocks[index + 1].depthwise, scale, shift)
        else:
            _absorb_into_linear(folded.head, scale, shift)
        block.norm = nn.Identity()
    return folded


class CropToEven(nn.Module):
    """Drops the last time step of an odd-length series: what AvgPool1d(2) ignores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] // 2 * 2]


def deployment_model(model: SeparableCNN) -> SeparableCNN:
    """The same function, cheaper to run: BatchNorm folded, and the last pooling removed.

    The last block's AvgPool1d(2) is followed only by the global mean over time, and the mean
    of pairwise means is the mean over the first 2*floor(L/2) steps. Pooling costs as much as
    the convolutions here (more in int8, whose QLinearAveragePool is slow), so the last pool
    becomes a crop.
    """
    deployed = fold_batchnorm(model)
    deployed.blocks[-1].pool = CropToEven()
    return deployed


# --------------------------------------------------------------------------- ONNX export


@contextlib.contextmanager
def _quiet():
    """Silence exporter chatter (progress lines, torchvision-missing warnings, deprecations)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return options


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
    with _quiet():
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
    _strip_debug_metadata(tmp)
    onnx.checker.check_model(onnx.load(tmp), full_check=True)
    session = ort.InferenceSession(str(tmp), _session_options(), providers=["CPUExecutionProvider"])
    for batch in (1, 64):
        (logits,) = session.run(["logits"], {"input": np.zeros((batch, n_channels, length), np.float32)})
        if logits.shape[0] != batch:
            raise RuntimeError(f"exported model returned batch {logits.shape[0]} for input batch {batch}")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- static int8


class _ArrayReader(ortq.CalibrationDataReader):
    """Feeds a float32 [N, C, T] array to the calibrator in fixed-order batches."""

    def __init__(self, data: np.ndarray, batch_size: int, input_name: str = "input"):
        self._data = data
        self._batch_size = batch_size
        self._input_name = input_name
        self._start = 0

    def get_next(self) -> dict | None:
        if self._start >= len(self._data):
            return None
        batch = self._data[self._start : self._start + self._batch_size]
        self._start += self._batch_size
        return {self._input_name: batch}

    def __len__(self) -> int:
        return -(-len(self._data) // self._batch_size)

    def rewind(self) -> None:
        self._start = 0


def _check_quant_args(
    calibration: np.ndarray, quant_format: str, calibration_method: str, batch_size: int
) -> None:
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"unknown quant_format {quant_format!r}: use one of {sorted(QUANT_FORMATS)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ValueError(
            f"unknown calibration_method {calibration_method!r}: use one of {sorted(CALIBRATION_METHODS)}"
        )
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


def quantize_static_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration: np.ndarray,
    *,
    quant_format: str,
    calibration_method: str,
    per_channel: bool,
    batch_size: int = 64,  # calibration batch; MinMax ranges do not depend on it, histograms may
    reduce_range: bool = False,
) -> Path:
    """Quantize an fp32 ONNX classifier to int8 with activation ranges from ``calibration``.

    ``calibration`` is float32 [N, C, T]. ``quant_format`` is "QOperator" (QLinearConv etc.)
    or "QDQ" (Quantize/DequantizeLinear around float ops, fused by ORT at load time).
    ``calibration_method`` is "MinMax", "Entropy" or "Percentile".
    """
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    _check_quant_args(calibration, quant_format, calibration_method, batch_size)
    int8_path = Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        prepared = Path(tmpdir) / "prepared.onnx"
        quantized = Path(tmpdir) / "int8.onnx"
        with _quiet():
            ortq.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
            ortq.quantize_static(
                str(prepared),
                str(quantized),
                _ArrayReader(calibration, batch_size),
                quant_format=QUANT_FORMATS[quant_format],
                calibrate_method=CALIBRATION_METHODS[calibration_method],
                per_channel=per_channel,
                # uint8 activations x int8 weights (U8S8) is the pair MLAS's x86 int8 kernels are
                # built around: VNNI's vpdpbusd multiplies u8 by s8 natively. Without VNNI
                # (AVX2/plain AVX512) those kernels use vpmaddubsw, whose int16 pair sums can
                # saturate; reduce_range=True (7-bit weights) avoids that there. Our target CPUs
                # have AVX512-VNNI, so the full 8-bit range is kept by default.
                activation_type=ortq.QuantType.QUInt8,
                weight_type=ortq.QuantType.QInt8,
                reduce_range=reduce_range,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        _strip_debug_metadata(quantized)
        os.replace(quantized, int8_path)
    return int8_path


def select_calibration(train_inputs: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """``n_samples`` training samples drawn without replacement (all of them if fewer)."""
    if n_samples >= len(train_inputs):
        return train_inputs
    chosen = np.random.default_rng(seed).choice(len(train_inputs), size=n_samples, replace=False)
    return train_inputs[np.sort(chosen)]


def quantize_onnx_model(
    *,
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    record_path: str | os.PathLike,
    train_inputs: np.ndarray,
    seed: int,
    calibration_samples: int,
    calibration_method: str,
    quant_format: str,
    per_channel: bool,
) -> dict:
    """Calibrate on a seeded subset of the training inputs, quantize, and record what was done.

    Calibration never sees validation or test data.
    """
    calibration = select_calibration(train_inputs, calibration_samples, seed)
    quantize_static_int8(
        fp32_path,
        int8_path,
        calibration,
        quant_format=quant_format,
        calibration_method=calibration_method,
        per_channel=per_channel,
    )
    op_counts = count_quantized_ops(int8_path)
    if not has_int8_ops(op_counts):
        raise RuntimeError(f"{int8_path} holds no int8 operators: {op_counts}")
    record = {
        "calibration_samples": int(len(calibration)),
        "calibration_method": calibration_method,
        "quant_format": quant_format,
        "per_channel": per_channel,
        "activation_type": "uint8",
        "weight_type": "int8",
        "op_counts": op_counts,
        "onnxruntime_version": ort.__version__,
    }
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    Path(record_path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _strip_debug_metadata(path: Path) -> None:
    """Drop exporter debug metadata: stack traces with absolute source paths, FX node names.

    They are a third of a small model's file, differ between checkouts and runs, and
    carry nothing the runtime uses; without them identical inputs give identical bytes.
    """
    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.doc_string = ""
    graph = model.graph
    for item in (*graph.node, *graph.initializer, *graph.value_info, *graph.input, *graph.output):
        del item.metadata_props[:]
        item.doc_string = ""
    onnx.save(model, str(path))


def count_quantized_ops(path: str | os.PathLike) -> dict[str, int]:
    """Op-type counts of an ONNX graph (every op, so float leftovers show up too)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(sorted(Counter(node.op_type for node in graph.node).items()))


def has_int8_ops(op_counts: dict[str, int]) -> bool:
    return any(op_counts.get(op, 0) > 0 for op in _INT8_OP_TYPES)


# --------------------------------------------------------------------------- inference


class OnnxClassifier:
    """An ORT CPU session pinned to ``threads`` intra-op threads, one op at a time."""

    def __init__(self, path: str | os.PathLike, *, threads: int = 1):
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), _session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, classes] for a float32 [N, C, T] batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self(batch).argmax(axis=1)
