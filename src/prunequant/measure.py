"""Cost measures of a model: parameters, MACs, weight bytes, file bytes, latency.

Latency caveat: torch's and ONNX Runtime's thread pools slow each other down when
both are alive in one process, so a caller should time one runtime per process
and interleave repeated runs of the variants being compared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # each runtime is imported where it is used: a job pays only for the one it runs
    import onnx
    import torch
    from torch import nn

    from prunequant.quantize.runtime import OnnxClassifier

__all__ = [
    "count_parameters",
    "count_macs",
    "state_dict_weight_bytes",
    "onnx_weight_bytes",
    "file_bytes",
    "make_torch_runner",
    "make_onnx_runner",
]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, n_channels: int, length: int) -> int:
    """Multiply-accumulates for one sample of [n_channels, length].

    Counts what ``FlopCounterMode`` counts as matmul-like work (convolutions and the
    Linear head; FLOPs = 2 x MACs); bias adds, ReLU, BatchNorm and pooling are not counted.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, n_channels, length))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def state_dict_weight_bytes(model: nn.Module) -> int:
    """Payload bytes of every tensor in the state_dict except ``num_batches_tracked``.

    BatchNorm running mean/var count: inference needs them (until folded away), so
    they are part of what a deployed fp32 model must store. The step counter is not.
    """
    return sum(
        tensor.numel() * tensor.element_size()
        for name, tensor in model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    )


def _tensor_payload_bytes(tensor: onnx.TensorProto) -> int:
    numel = int(np.prod(tensor.dims, dtype=np.int64))  # prod of no dims is 1: a scalar
    from onnx.helper import tensor_dtype_to_np_dtype

    itemsize = tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return numel * itemsize


def onnx_weight_bytes(path: str | os.PathLike) -> int:
    """Payload bytes of an ONNX graph's stored tensors: numel x element size.

    Counts initializers and Constant-node tensors, whichever field (raw_data, float_data,
    external file) holds them, so container overhead (names, graph, protobuf framing)
    is left out and int8 and fp32 models compare weight for weight.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    total = sum(_tensor_payload_bytes(t) for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            total += sum(_tensor_payload_bytes(a.t) for a in node.attribute if a.name == "value")
    return total


def file_bytes(path: str | os.PathLike) -> int:
    return os.path.getsize(path)


def _fixed_input(batch_size: int, n_channels: int, length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch_size, n_channels, length), dtype=np.float32)


def make_torch_runner(
    model: nn.Module, *, batch_size: int, n_channels: int, length: int, threads: int, seed: int = 0
) -> Callable[[], torch.Tensor]:
    """A no-argument callable running ``model`` in eval mode on a fixed random batch.

    Sets ``torch.set_num_threads(threads)`` for the whole process, since torch has no
    per-call thread count.
    """
    import torch

    torch.set_num_threads(threads)
    model.eval()
    batch = torch.from_numpy(_fixed_input(batch_size, n_channels, length, seed))

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(batch)

    return run


def make_onnx_runner(
    model: str | os.PathLike | OnnxClassifier,
    *,
    batch_size: int,
    n_channels: int,
    length: int,
    threads: int,
    seed: int = 0,
) -> Callable[[], np.ndarray]:
    """A no-argument callable running an ONNX model in ORT on the same fixed batch as
    :func:`make_torch_runner` (same seed, same values).

    ``model`` is a path, opened here with ``threads`` intra-op threads, or an already open
    :class:`OnnxClassifier` (its own thread count applies), so one session can serve
    several batch sizes.
    """
    from prunequant.quantize.runtime import OnnxClassifier

    if not isinstance(model, OnnxClassifier):
        model = OnnxClassifier(model, threads=threads)
    session = model.session
    feed = {session.get_inputs()[0].name: _fixed_input(batch_size, n_channels, length, seed)}
    output_names = [session.get_outputs()[0].name]

    def run() -> np.ndarray:
        return session.run(output_names, feed)[0]

    return run
