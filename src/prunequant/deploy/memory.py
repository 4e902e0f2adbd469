"""Peak activation memory of a model, estimated from its graph: what a deployment's arena must hold.

Along one execution order (the graph's topological order, as a runtime without a scheduler of its
own runs it), a tensor is allocated when the op that makes it runs and freed after the last op that
reads it; the graph's input is live from the start, its output to the end. The estimate is the
largest total size of the tensors live during one op (its inputs, its outputs and everything made
earlier and read later), at the deployment's element size: 4 bytes for fp32, 1 for int8.

Two kinds of op need no buffer of their own:

- reshapes (view, reshape, flatten, squeeze, unsqueeze): the output is the input's memory;
- with ``fuse_activations`` (the default), a ReLU whose input has no other reader: runtimes fuse
  it into the op before it (TFLite's CONV_2D, ONNX Runtime's QLinearConv) or run it in place.

Weights are not activations (they live in flash) and are not counted; nor are kernels' scratch
buffers or a runtime's own structures, which TFLM's arena adds as its tail and part of its head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Step",
    "PeakActivations",
    "peak_activation_bytes",
    "torch_graph_steps",
    "model_peak_activation_bytes",
]


@dataclass(frozen=True)
class Step:
    """One op of an execution order: the tensors it reads and the tensors it makes."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    aliases_input: bool = False  # True: its single output is its first input's memory


@dataclass(frozen=True)
class PeakActivations:
    bytes: int  # the largest total of live tensors, in bytes
    step: str  # the op during which it occurs (the graph input's name when that alone is largest)
    live: tuple[str, ...]  # the buffers live then, each named by the tensor that made it


def peak_activation_bytes(
    steps: Sequence[Step],
    elements: Mapping[str, int],
    *,
    graph_inputs: Iterable[str],
    graph_outputs: Iterable[str],
    element_size: int,
) -> PeakActivations:
    """The peak of live tensor bytes along ``steps`` (in order); ``elements`` gives each tensor's size."""
    buffer_of = {name: name for name in graph_inputs}
    for step in steps:
        for output in step.outputs:
            buffer_of[output] = buffer_of[step.inputs[0]] if step.aliases_input else output
    unknown = sorted({t for s in steps for t in s.inputs} - set(buffer_of))
    if unknown:
        raise ValueError(f"steps read tensors that no step makes and that are not graph inputs: {unknown}")
    # A buffer is as large as the largest tensor on it and lives until its last reader has run.
    size = {}
    for tensor, buffer in buffer_of.items():
        size[buffer] = max(size.get(buffer, 0), elements[tensor])
    last_use = {buffer: -1 for buffer in size}
    for index, step in enumerate(steps):
        for tensor in step.inputs:
            last_use[buffer_of[tensor]] = max(last_use[buffer_of[tensor]], index)
    for tensor in graph_outputs:
        last_use[buffer_of[tensor]] = len(steps)
    live = {buffer for buffer in buffer_of.values() if buffer in set(graph_inputs)}
    peak = PeakActivations(
        bytes=sum(size[b] for b in live) * element_size, step="input", live=tuple(sorted(live))
    )
    for index, step in enumerate(steps):
        live |= {buffer_of[output] for output in step.outputs}
        total = sum(size[buffer] for buffer in live) * element_size
        if total > peak.bytes:
            peak = PeakActivations(bytes=total, step=step.name, live=tuple(sorted(live)))
        live = {buffer for buffer in live if last_use[buffer] > index}
    return peak


_aten = torch.ops.aten
_RESHAPES = {
    _aten.view.default,
    _aten.reshape.default,
    _aten._unsafe_view.default,
    _aten.flatten.using_ints,
    _aten.squeeze.dim,
    _aten.squeeze.dims,
    _aten.squeeze.default,
    _aten.unsqueeze.default,
    _aten.alias.default,
}
_ACTIVATIONS = {_aten.relu.default, _aten.relu_.default}


def torch_graph_steps(
    model: nn.Module, example: torch.Tensor, *, fuse_activations: bool = True
) -> tuple[list[Step], dict[str, int], list[str], list[str]]:
    """Steps, tensor sizes (elements), graph inputs and outputs of ``model`` exported for ``example``."""
    exported = torch.export.export(model.eval(), (example,))
    graph = exported.graph
    inputs = list(exported.graph_signature.user_inputs)
    outputs = list(exported.graph_signature.user_outputs)
    elements = {}
    steps = []
    activations = set(inputs)  # tensors computed from the input; the rest (weights) live in flash
    readers = {node.name: len(node.users) for node in graph.nodes}
    for node in graph.nodes:
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            elements[node.name] = value.numel()
        read = tuple(arg.name for arg in node.all_input_nodes if arg.name in activations)
        if node.op != "call_function" or not isinstance(value, torch.Tensor) or not read:
            continue
        activations.add(node.name)
        aliases = node.target in _RESHAPES or (
            fuse_activations and node.target in _ACTIVATIONS and readers[read[0]] == 1
        )
        steps.append(Step(name=node.name, inputs=read, outputs=(node.name,), aliases_input=aliases))
    return steps, elements, inputs, outputs


def model_peak_activation_bytes(
    model: nn.Module, example: torch.Tensor, *, element_size: int, fuse_activations: bool = True
) -> PeakActivations:
    """:func:`peak_activation_bytes` of ``model`` at batch ``len(example)`` (use batch 1 for a device)."""
    steps, elements, inputs, outputs = torch_graph_steps(model, example, fuse_activations=fuse_activations)
    return peak_activation_bytes(
        steps, elements, graph_inputs=inputs, graph_outputs=outputs, element_size=element_size
    )
