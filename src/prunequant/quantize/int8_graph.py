"""Rewrites of the quantized graph that make int8 models run fast in ONNX Runtime, with the same integers.

The fp32 model and its int8 child come from one deployment form
(:func:`~prunequant.quantize.fold.deployment_model`); what is here only concerns int8 kernels:
:func:`pad_depthwise_channels`, :func:`float_logits` and :func:`channels_last_global_pools`
(:func:`finish_int8_graph_in_file` applies all three to a file). They are written with ``onnx_ir``,
whose values know their producer and readers. Profiles and timings of each are in
``bench/int8_profile.py`` and ``bench/results/int8-profile.txt``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

__all__ = [
    "DEPTHWISE_CHANNEL_MULTIPLE",
    "channels_last_global_pools",
    "finish_int8_graph_in_file",
    "float_logits",
    "pad_depthwise_channels",
]

# MLAS's x86 int8 depthwise kernel (qdwconv_avx2.cpp, the QLinearConv path for group == channels)
# computes channels in vector blocks of 16, then one block of 8, then one channel at a time in a
# scalar loop. With JapaneseVowels' 12 channels padded to 16, the one-block int8 model runs about
# 1.5x faster at batch 64 (bench/results/int8-profile.txt, runs F and G).
DEPTHWISE_CHANNEL_MULTIPLE = 8


def _owned(node: ir.Node, index: int) -> ir.Value | None:
    """Input ``index`` of ``node`` when it is an initializer that no other input reads, else None."""
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None or not value.is_initializer() or len(value.uses()) != 1:
        return None
    return value


def _only_reader(value: ir.Value) -> ir.Node | None:
    readers = value.consumers()
    return readers[0] if len(readers) == 1 and not value.is_graph_output() else None


def _dequantized(value: ir.Value | None) -> ir.Node | None:
    """The DequantizeLinear that makes ``value`` from an initializer of its own, else None."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "DequantizeLinear" or _owned(node, 0) is None:
        return None
    return node


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def _is_depthwise(conv: ir.Node, weight: ir.Value) -> bool:
    shape = weight.const_value.shape  # [C_out, C_in / group, *kernel]
    return conv.attributes.get_int("group", 1) == shape[0] > 1 and shape[1] == 1


@dataclass
class _Padding:
    """Where one depthwise conv's extra channels go, in either int8 graph format."""

    conv: ir.Node  # its group attribute grows
    extra: int  # channels added
    entry: ir.Node  # input 0 is the conv's uint8 input: the conv, or its DequantizeLinear
    filters: tuple[ir.Node, int]  # (node, input) of the int8 weights [C, 1, *kernel]
    vectors: list[tuple[ir.Node, int, str]]  # (node, input, Pad mode) of per-channel tensors [C]
    readers: list[tuple[ir.Node, int]]  # (node, input) of the reading convs' int8 weights [M, C, ...]


def _per_channel(node: ir.Node, indices_and_modes) -> list[tuple[ir.Node, int, str]] | None:
    """The per-channel inputs among ``indices_and_modes`` (absent or scalar ones skipped); None if
    one of them is shared with another node."""
    chosen = []
    for index, mode in indices_and_modes:
        if index >= len(node.inputs) or node.inputs[index] is None:
            continue
        value = _owned(node, index)
        if value is None:
            return None
        if len(value.const_value.shape):  # a scalar holds for every channel: as it is
            chosen.append((node, index, mode))
    return chosen


def _qoperator_padding(conv: ir.Node, multiple: int) -> _Padding | None:
    weight = _owned(conv, 3)
    if weight is None or not _is_depthwise(conv, weight):
        return None
    output = conv.outputs[0]
    followers = output.consumers()
    dense = all(
        node.op_type == "QLinearConv" and node.attributes.get_int("group", 1) == 1 for node in followers
    )
    vectors = _per_channel(conv, ((4, "edge"), (5, "constant"), (8, "constant")))
    if not followers or not dense or output.is_graph_output() or vectors is None:
        return None
    if any(_owned(node, 3) is None for node in followers):
        return None
    extra = -weight.const_value.shape[0] % multiple
    return _Padding(conv, extra, conv, (conv, 3), vectors, [(node, 3) for node in followers])


def _qdq_padding(conv: ir.Node, multiple: int) -> _Padding | None:
    """A float Conv between DequantizeLinear and QuantizeLinear nodes, which ORT fuses into QLinearConv."""
    weights = _dequantized(conv.inputs[1])
    source = conv.inputs[0].producer()
    if weights is None or not _is_depthwise(conv, weights.inputs[0]):
        return None
    if source is None or source.op_type != "DequantizeLinear":
        return None
    if _only_reader(source.outputs[0]) is not conv:  # the padded input must reach the conv alone
        return None
    bias = _dequantized(conv.inputs[2]) if len(conv.inputs) > 2 else None
    vectors = _per_channel(weights, ((1, "edge"), (2, "constant")))
    if bias is not None:
        bias_vectors = _per_channel(bias, ((0, "constant"), (1, "edge"), (2, "constant")))
        vectors = None if vectors is None or bias_vectors is None else vectors + bias_vectors
    requantize = _only_reader(conv.outputs[0])
    if vectors is None or requantize is None or requantize.op_type != "QuantizeLinear":
        return None
    requantized = requantize.outputs[0]
    readers = []
    for dequantize in requantized.consumers():
        if dequantize.op_type != "DequantizeLinear" or dequantize.outputs[0].is_graph_output():
            return None
        for reader in dequantize.outputs[0].consumers():
            reader_weights = _dequantized(reader.inputs[1]) if reader.op_type == "Conv" else None
            if reader_weights is None or reader.attributes.get_int("group", 1) != 1:
                return None
            readers.append((reader_weights, 0))
    if not readers or requantized.is_graph_output():
        return None
    extra = -weights.inputs[0].const_value.shape[0] % multiple
    return _Padding(conv, extra, source, (weights, 0), vectors, readers)


def _insert_in_front(
    graph: ir.Graph,
    node: ir.Node,
    index: int,
    op_type: str,
    inputs: list,
    attributes: dict,
    *,
    name: str,
    output: str,
) -> None:
    """Feed input ``index`` of ``node`` through ``op_type(node.inputs[index], *inputs)``."""
    inserted = ir.node(
        op_type, [node.inputs[index], *inputs], attributes, name=name, outputs=[ir.Value(name=output)]
    )
    graph.insert_before(node, inserted)
    node.replace_input_with(index, inserted.outputs[0])


def _padded_in_graph(graph: ir.Graph, node: ir.Node, index: int, pads: ir.Value, mode: str) -> None:
    """Feed input ``index`` of ``node`` through a Pad of its initializer. ORT folds the constant Pad
    when it loads the model, so the kernel sees (and prepacks) the padded tensor while the file
    keeps the original one: the zero channels cost no stored bytes."""
    name = node.inputs[index].name
    _insert_in_front(
        graph, node, index, "Pad", [pads], {"mode": mode}, name=f"{name}_pad", output=f"{name}_padded"
    )


def _pad(graph: ir.Graph, site: _Padding) -> None:
    filters_node, filters_input = site.filters
    dims = filters_node.inputs[filters_input].const_value.shape.dims  # [C, 1, *kernel]
    channels, rank = dims[0], len(dims)
    pad_amounts = {  # ONNX pads: every axis's start, then every axis's end
        "channels": [0] * (rank + 1) + [site.extra] + [0] * (rank - 2),  # axis 1: input, reader weights
        "filters": [0] * rank + [site.extra] + [0] * (rank - 1),  # axis 0 of the depthwise weights
        "vector": [0, site.extra],  # per-channel bias, scales and zero points
    }
    pads = {
        role: _initializer(graph, f"{site.conv.name}_pads_{role}", np.array(amounts, np.int64))
        for role, amounts in pad_amounts.items()
    }
    for node, index in site.readers:
        _padded_in_graph(graph, node, index, pads["channels"], "constant")
    _padded_in_graph(graph, filters_node, filters_input, pads["filters"], "constant")
    for node, index, mode in site.vectors:
        _padded_in_graph(graph, node, index, pads["vector"], mode)
    site.conv.attributes["group"] = ir.AttrInt64("group", channels + site.extra)
    indices = _initializer(
        graph,
        f"{site.conv.name}_channel_indices",
        np.array([*range(channels), *[channels - 1] * site.extra], np.int32),
    )
    _insert_in_front(
        graph,
        site.entry,
        0,
        "Gather",
        [indices],
        {"axis": 1},
        name=f"{site.conv.name}_channel_pad",
        output=f"{site.conv.name}_input_padded",
    )


def pad_depthwise_channels(model: ir.Model, multiple: int = DEPTHWISE_CHANNEL_MULTIPLE) -> dict[str, int]:
    """Give each depthwise int8 conv a multiple of ``multiple`` channels (see DEPTHWISE_CHANNEL_MULTIPLE).

    Works on the quantized graph (QOperator QLinearConv, or QDQ's DequantizeLinear → Conv →
    QuantizeLinear, which ORT fuses into one at load time), so calibration and every scale stay
    what they were:
    - its int8 weights, bias and weight zero points get zeros for the extra channels, its
      per-channel scales repeat the last one, so an extra channel's output is its output zero
      point whatever its input holds;
    - the conv's uint8 input gets the extra channels as copies of its last one, by a Gather at
      run time: at batch 1 about 1 µs cheaper than a Pad with the zero point, which ORT runs
      through its generic padding code, and as fast at batch 64 (bench/results/int8-profile.txt,
      run L);
    - the convs that read its output (the pointwise convs) get zero weights for the extra
      channels, so they add exactly nothing.
    Every real channel computes the same integers as before. A conv is left as it is when its
    output reaches anything but a group-1 conv, when its tensors are shared, or (QDQ) when its
    input does not come straight from a DequantizeLinear of its own, as behind a residual
    block's zero padding. The weights are padded
    by Pads of the stored initializers, which ORT folds at load time: the file grows by the pads'
    few int64 constants only. Returns ``{conv name: channels added}``; ``model`` changes in place.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    finders = {"QLinearConv": _qoperator_padding, "Conv": _qdq_padding}
    sites = []
    for conv in model.graph:
        finder = finders.get(conv.op_type)
        site = finder(conv, multiple) if finder is not None else None
        if site is not None and site.extra:
            sites.append(site)
    for site in sites:
        _pad(model.graph, site)
    return {site.conv.name: site.extra for site in sites}


def _write_to_output(graph: ir.Graph, value: ir.Value, output: ir.Value) -> None:
    """Make ``value`` the graph output ``output`` is, under its name and type (``output`` is dropped)."""
    position = graph.outputs.index(output)
    name, type_, shape = output.name, output.type, output.shape
    output.name = None
    graph.outputs[position] = value
    value.name, value.type, value.shape = name, type_, shape


def _remove_unused_initializers(graph: ir.Graph) -> None:
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_input() and not value.is_graph_output():
            del graph.initializers[name]


def float_logits(model: ir.Model) -> list[str]:
    """Let the int8 head write float logits itself instead of int8 logits that are then dequantized.

    ORT's int8 GEMM (com.microsoft QGemm) returns float when it is given no output scale, so
    ``QGemm → DequantizeLinear → output`` (QOperator) becomes one QGemm, and in QDQ form
    ``Gemm → QuantizeLinear → DequantizeLinear → output`` becomes a Gemm that ORT fuses with the
    DequantizeLinears of its input and weights into the same float-output QGemm. The int32 sums
    are the same; the logits skip one rounding to the uint8 grid (so they are, if anything, nearer
    fp32's), and the graph runs one op fewer, a microsecond or two of a batch-1 call
    (bench/results/int8-profile.txt, run I). Returns the names of the rewritten heads; ``model``
    changes in place.
    """
    graph = model.graph
    rewritten = []
    for dequantize in [node for node in graph if node.op_type == "DequantizeLinear"]:
        output, source = dequantize.outputs[0], dequantize.inputs[0]
        producer = source.producer()
        if not output.is_graph_output() or len(source.uses()) != 1 or producer is None:
            continue
        if producer.op_type == "QGemm" and producer.domain == "com.microsoft" and len(producer.inputs) > 7:
            bias_given = producer.inputs[6] is not None
            producer.resize_inputs(7 if bias_given else 6)  # no y_scale, y_zero_point: float output
            graph.remove(dequantize, safe=False)
            _write_to_output(graph, producer.outputs[0], output)
            rewritten.append(producer.name)
            continue
        gemm = producer.inputs[0].producer() if producer.op_type == "QuantizeLinear" else None
        if gemm is not None and gemm.op_type == "Gemm" and len(producer.inputs[0].uses()) == 1:
            graph.remove([dequantize, producer], safe=False)
            _write_to_output(graph, gemm.outputs[0], output)
            rewritten.append(gemm.name)
    _remove_unused_initializers(graph)
    return rewritten


# Ops whose output has the rank of their data inputs (given by index): the int8 graph's convs,
# crops, pads, pools, (de)quantizers and ORT's int8 elementwise ops (inputs A, A scale, A zero
# point, B, ...); a Gather keeps it only with 1-D indices (_rank_keeping_inputs).
_RANK_KEEPING = {
    "QLinearConv": (0,),
    "Slice": (0,),
    "Pad": (0,),
    "QuantizeLinear": (0,),
    "DequantizeLinear": (0,),
    "Relu": (0,),
    "QLinearAveragePool": (0,),
    "QLinearAdd": (0, 3),
    "QLinearMul": (0, 3),
}


def _rank_keeping_inputs(node: ir.Node) -> tuple[int, ...] | None:
    """The data inputs whose rank ``node``'s output has, or None when it may change the rank."""
    if node.op_type == "Gather":  # with 1-D constant indices, as the depthwise channel padding's
        indices = node.inputs[1].const_value
        return (0,) if indices is not None and len(indices.shape) == 1 else None
    return _RANK_KEEPING.get(node.op_type)


def _flattens_to_batch_by_channels(node: ir.Node | None) -> bool:
    """``node`` is a Flatten(axis=1), or a Reshape to [batch, -1 or C]: the same [N, C] from [N, C, 1]
    and from [N, 1, C]."""
    if node is None:
        return False
    if node.op_type == "Flatten":
        return node.attributes.get_int("axis", 1) == 1
    shape = node.inputs[1].const_value if node.op_type == "Reshape" else None
    return shape is not None and len(shape.shape) == 1 and shape.numpy().tolist()[:1] in ([0], [-1])


def channels_last_global_pools(model: ir.Model) -> list[str]:
    """Run each int8 mean over time channels-last, where ORT runs the conv before it.

    ORT's layout pass runs every int8 conv channels-last ([N, T, C]) and puts a Transpose back to
    [N, C, T] behind the last one, since the QLinearGlobalAveragePool that reads it is written
    channels-first. Written channels-last here (``channels_last=1`` behind an explicit Transpose),
    the pool's input Transpose cancels against ORT's, and its [N, 1, C] output flattens to the
    same [N, C] as [N, C, 1] does: one op fewer per call, the same integers. Only 1-D pools read by
    one flatten to [N, C] change; ``model`` changes in place. Returns the rewritten pools' names.
    """
    graph = model.graph

    @cache
    def rank(value: ir.Value) -> int | None:
        # ORT's contrib ops carry no shapes; these ops keep their data inputs' rank, back to the input.
        if value.shape is not None:
            return len(value.shape)
        producer = value.producer()
        data_inputs = _rank_keeping_inputs(producer) if producer is not None else None
        if data_inputs is None:
            return None
        ranks = [rank(producer.inputs[index]) for index in data_inputs]
        return None if None in ranks else max(ranks)

    rewritten = []
    for pool in [node for node in graph if node.op_type == "QLinearGlobalAveragePool"]:
        if pool.attributes.get_int("channels_last", 0) or rank(pool.inputs[0]) != 3:
            continue
        if not _flattens_to_batch_by_channels(_only_reader(pool.outputs[0])):
            continue
        _insert_in_front(
            graph,
            pool,
            0,
            "Transpose",
            [],
            {"perm": [0, 2, 1]},
            name=f"{pool.name}_to_channels_last",
            output=f"{pool.inputs[0].name}_channels_last",
        )
        pool.attributes["channels_last"] = ir.AttrInt64("channels_last", 1)
        rewritten.append(pool.name)
    return rewritten


def _forget_shapes(graph: ir.Graph) -> None:
    """Drop the shapes ORT's quantizer recorded inside the graph: padding and the float logits change
    some of them, and ORT infers them again when it loads the model."""
    for value in (*graph.initializers.values(), *(out for node in graph for out in node.outputs)):
        if not value.is_graph_input() and not value.is_graph_output():
            value.type, value.shape = None, None


def finish_int8_graph_in_file(
    path: str | os.PathLike,
    *,
    depthwise_channel_multiple: int = DEPTHWISE_CHANNEL_MULTIPLE,
    lean_tail: bool = True,
) -> dict:
    """The quantized graph rewrites, on an int8 ONNX file replaced (atomically) only if it changes.

    :func:`pad_depthwise_channels` (``depthwise_channel_multiple`` 1: none), then, with
    ``lean_tail``, :func:`float_logits` and :func:`channels_last_global_pools`. Returns what each
    did: ``depthwise_channels_padded`` ({conv: channels added}), ``float_logits`` and
    ``channels_last_pools`` (node names).
    """
    model = ir.load(path)
    done = {
        "depthwise_channels_padded": pad_depthwise_channels(model, depthwise_channel_multiple),
        "float_logits": float_logits(model) if lean_tail else [],
        "channels_last_pools": channels_last_global_pools(model) if lean_tail else [],
    }
    if any(done.values()):
        _forget_shapes(model.graph)
        onnx.checker.check_model(ir.to_proto(model))
        partial = Path(path).with_name(Path(path).name + ".rewriting")
        ir.save(model, partial)
        os.replace(partial, path)
    return done
