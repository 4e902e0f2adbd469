"""Graph rewrites that make int8 models run fast in ONNX Runtime, with the model's function unchanged.

:func:`int8_friendly_graph` rewrites the fp32 graph before quantization (outputs agree to float
rounding); :func:`pad_depthwise_channels`, :func:`float_logits` and :func:`channels_last_global_pools`
rewrite the quantized graph (:func:`finish_int8_graph_in_file` applies all three to a file). Profiles
and timings of each are in ``bench/int8_profile.py`` and ``bench/results/int8-profile.txt``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = [
    "DEPTHWISE_CHANNEL_MULTIPLE",
    "channels_last_global_pools",
    "finish_int8_graph_in_file",
    "float_logits",
    "int8_friendly_graph",
    "pad_depthwise_channels",
]

# MLAS's x86 int8 depthwise kernel (qdwconv_avx2.cpp, the QLinearConv path for group == channels)
# computes channels in vector blocks of 16, then one block of 8, then one channel at a time in a
# scalar loop. With JapaneseVowels' 12 channels padded to 16, the one-block int8 model runs about
# 1.5x faster at batch 64 (bench/results/int8-profile.txt, runs F and G).
DEPTHWISE_CHANNEL_MULTIPLE = 8


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _unused_initializers_removed(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    for tensor in [tensor for tensor in graph.initializer if tensor.name not in used]:
        graph.initializer.remove(tensor)


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    return shapes


def _input_steps_needed(node: onnx.NodeProto, out_steps: int, constants: dict) -> int | None:
    """Leading input steps a 1-D op needs to compute its first ``out_steps`` outputs exactly.

    None when the op is not one this can see through (padding, ceil mode, 2-D kernels, others).
    """
    if node.op_type == "Relu":
        return out_steps
    if node.op_type not in ("Conv", "AveragePool"):
        return None
    if any(_attribute(node, "pads", [0])) or _attribute(node, "auto_pad", b"NOTSET") not in (
        b"NOTSET",
        b"VALID",
    ):
        return None
    if _attribute(node, "ceil_mode", 0):
        return None
    kernel = _attribute(node, "kernel_shape", None)
    if kernel is None and node.op_type == "Conv" and node.input[1] in constants:
        kernel = list(constants[node.input[1]].shape[2:])
    if kernel is None or len(kernel) != 1:
        return None
    stride = _attribute(node, "strides", [1])[0]
    dilation = _attribute(node, "dilations", [1])[0]
    return (out_steps - 1) * stride + (kernel[0] - 1) * dilation + 1


def _time_crop_end(node: onnx.NodeProto, constants: dict, rank: int | None) -> int | None:
    """``E`` when ``node`` is ``x[..., :E]`` on the last axis of a rank-3 tensor, else None."""
    if node.op_type != "Slice" or rank != 3 or len(node.input) < 4:
        return None
    try:
        starts, ends, axes = (constants[name].tolist() for name in node.input[1:4])
        steps = constants[node.input[4]].tolist() if len(node.input) > 4 and node.input[4] else [1]
    except KeyError:
        return None
    if starts != [0] or steps != [1] or axes not in ([2], [-1]) or ends[0] < 1:
        return None
    return int(ends[0])


def _move_time_crops_up(model: onnx.ModelProto) -> None:
    """Move each crop ``x[..., :E]`` above the Relu/Conv/AveragePool chain that produces ``x``.

    Without padding, the first E output steps of such an op depend only on its first
    (E-1)*stride + (k-1)*dilation + 1 input steps, so cropping there computes the same values
    while every op in the chain does less work. After the last block the crop then sits on the
    model input, and the op that averages over time reads a whole tensor: a GlobalAveragePool.
    """
    graph = model.graph
    constants, shapes = _constant_values(graph), _static_shapes(model)
    outputs = {value.name for value in graph.output}
    for crop in [node for node in graph.node if node.op_type == "Slice"]:
        end = _time_crop_end(crop, constants, len(shapes.get(crop.input[0], [])) or None)
        if end is None or crop.output[0] in outputs:
            continue
        producers = {out: node for node in graph.node for out in node.output}
        uses = Counter(name for node in graph.node for name in node.input)
        tensor, chain = crop.input[0], []
        while tensor in producers and uses[tensor] == 1 and tensor not in outputs:
            needed = _input_steps_needed(producers[tensor], end, constants)
            if needed is None:
                break
            chain.append(producers[tensor])
            tensor, end = producers[tensor].input[0], needed
        if not chain:
            continue
        for node in graph.node:  # the crop's readers now read the (shorter) chain output directly
            node.input[:] = [crop.input[0] if name == crop.output[0] else name for name in node.input]
        graph.node.remove(crop)
        length = (shapes.get(tensor) or [None])[-1]
        if length is not None and end >= length:
            continue  # the chain already uses no more steps than it is given: no crop needed
        ends_name = f"{crop.name}_ends"
        graph.initializer.append(numpy_helper.from_array(np.array([end], np.int64), ends_name))
        cropped = f"{tensor}_cropped"
        moved = onnx.helper.make_node(
            "Slice", [tensor, crop.input[1], ends_name, crop.input[3]], [cropped], name=crop.name
        )
        chain[-1].input[0] = cropped
        graph.node.insert(list(graph.node).index(chain[-1]), moved)


def _reduce_means_to_global_pools(model: onnx.ModelProto) -> None:
    """Replace a mean over the last axis of a rank-3 [N, C, T] tensor by GlobalAveragePool (+ Flatten).

    ONNX Runtime has an int8 channels-last GlobalAveragePool (QLinearGlobalAveragePool) that
    reads the pointwise conv's int8 output as it is; ReduceMean has no int8 kernel, so in front
    of it the graph must transpose back to channels-first and dequantize the whole tensor.
    """
    graph = model.graph
    constants, shapes = _constant_values(graph), _static_shapes(model)
    for node in list(graph.node):
        if node.op_type != "ReduceMean" or len(shapes.get(node.input[0], [])) != 3:
            continue
        axes = (
            constants[node.input[1]].tolist() if len(node.input) > 1 and node.input[1] in constants else None
        )
        axes = _attribute(node, "axes", axes)
        if axes not in ([2], [-1]):
            continue
        position = list(graph.node).index(node)
        graph.node.remove(node)
        if _attribute(node, "keepdims", 1):
            replacement = [
                onnx.helper.make_node("GlobalAveragePool", [node.input[0]], node.output, name=node.name)
            ]
        else:
            pooled = f"{node.output[0]}_pooled"
            replacement = [
                onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=node.name),
                onnx.helper.make_node("Flatten", [pooled], node.output, name=f"{node.name}_flatten", axis=1),
            ]
        for offset, new_node in enumerate(replacement):
            graph.node.insert(position + offset, new_node)


def int8_friendly_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same function as ``model``, in a form whose int8 version runs fast in ONNX Runtime.

    The deployment form ends in ``conv → relu → x[..., :2*floor(T/2)] → mean over time``. In int8
    that tail costs a channels-last → channels-first Transpose, a Slice copy, a DequantizeLinear of
    the whole activation and a float ReduceMean: about 30 % of the int8 time at batch 64 (see
    bench/int8_profile.py). Here the crop moves up to the model input (exact: no op in between is
    padded) and the mean becomes a GlobalAveragePool, which ORT runs in int8, channels-last.
    Graphs without that pattern come back unchanged. Outputs agree with the original to float
    rounding; value_info is dropped because shapes along the moved crop change.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    _move_time_crops_up(model)
    _reduce_means_to_global_pools(model)
    _unused_initializers_removed(model.graph)  # the moved crops' old bounds and the means' axes
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


@dataclass
class _Padding:
    """Where one depthwise conv's extra channels go, in either int8 graph format."""

    conv: onnx.NodeProto  # its group attribute grows
    extra: int  # channels added
    entry: onnx.NodeProto  # input 0 is the conv's uint8 input: the conv, or its DequantizeLinear
    filters: list[tuple[onnx.NodeProto, int]]  # (node, input) of the int8 weights [C, 1, *kernel]
    vectors: list[tuple[onnx.NodeProto, int, str]]  # (node, input, Pad mode) of per-channel tensors [C]
    readers: list[tuple[onnx.NodeProto, int]]  # (node, input) of the reading convs' int8 weights [M, C, ...]


class _Graph:
    """Initializers, producers and readers of a graph's tensors, for finding padding sites."""

    def __init__(self, graph: onnx.GraphProto):
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.uses = Counter(name for node in graph.node for name in node.input)
        self.producers = {name: node for node in graph.node for name in node.output}
        self.readers = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.readers[name].append(node)
        self.outputs = {value.name for value in graph.output}

    def owned(self, node: onnx.NodeProto, index: int) -> bool:
        """Input ``index`` of ``node`` is an initializer that no other input reads."""
        name = node.input[index] if index < len(node.input) else ""
        return name in self.initializers and self.uses[name] == 1

    def dequantized(self, tensor: str) -> onnx.NodeProto | None:
        """The DequantizeLinear that makes ``tensor`` from an initializer of its own, else None."""
        node = self.producers.get(tensor)
        if node is None or node.op_type != "DequantizeLinear" or not self.owned(node, 0):
            return None
        return node

    def only_reader(self, tensor: str) -> onnx.NodeProto | None:
        readers = self.readers[tensor]
        return readers[0] if len(readers) == 1 and tensor not in self.outputs else None


def _per_channel(
    graph: _Graph, node: onnx.NodeProto, indices_and_modes
) -> list[tuple[onnx.NodeProto, int, str]] | None:
    """The per-channel inputs among ``indices_and_modes`` (absent or scalar ones skipped); None if
    one of them is shared with another node."""
    chosen = []
    for index, mode in indices_and_modes:
        if index >= len(node.input) or not node.input[index]:
            continue
        if not graph.owned(node, index):
            return None
        if graph.initializers[node.input[index]].dims:  # a scalar holds for every channel: as it is
            chosen.append((node, index, mode))
    return chosen


def _qoperator_padding(graph: _Graph, conv: onnx.NodeProto, multiple: int) -> _Padding | None:
    weight = graph.initializers.get(conv.input[3]) if graph.owned(conv, 3) else None
    if weight is None or not _is_depthwise(conv, weight):
        return None
    followers = graph.readers[conv.output[0]]
    dense = all(node.op_type == "QLinearConv" and _attribute(node, "group", 1) == 1 for node in followers)
    vectors = _per_channel(graph, conv, ((4, "edge"), (5, "constant"), (8, "constant")))
    if not followers or not dense or conv.output[0] in graph.outputs or vectors is None:
        return None
    if not all(graph.owned(node, 3) for node in followers):
        return None
    return _Padding(
        conv,
        -weight.dims[0] % multiple,
        conv,
        [(conv, 3)],
        vectors,
        [(n, 3) for n in followers],
    )


def _qdq_padding(graph: _Graph, conv: onnx.NodeProto, multiple: int) -> _Padding | None:
    """A float Conv between DequantizeLinear and QuantizeLinear nodes, which ORT fuses into QLinearConv."""
    weights = graph.dequantized(conv.input[1])
    source = graph.producers.get(conv.input[0])
    weight = graph.initializers[weights.input[0]] if weights is not None else None
    if (
        weight is None
        or not _is_depthwise(conv, weight)
        or source is None
        or source.op_type != "DequantizeLinear"
    ):
        return None
    if graph.only_reader(source.output[0]) is not conv:  # the padded input must reach the conv alone
        return None
    bias = graph.dequantized(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    vectors = _per_channel(graph, weights, ((1, "edge"), (2, "constant")))
    if bias is not None:
        bias_vectors = _per_channel(graph, bias, ((0, "constant"), (1, "edge"), (2, "constant")))
        vectors = None if vectors is None or bias_vectors is None else vectors + bias_vectors
    requantize = graph.only_reader(conv.output[0])
    if vectors is None or requantize is None or requantize.op_type != "QuantizeLinear":
        return None
    readers = []
    for dequantize in graph.readers[requantize.output[0]]:
        if dequantize.op_type != "DequantizeLinear" or dequantize.output[0] in graph.outputs:
            return None
        for reader in graph.readers[dequantize.output[0]]:
            reader_weights = graph.dequantized(reader.input[1]) if reader.op_type == "Conv" else None
            if reader_weights is None or _attribute(reader, "group", 1) != 1:
                return None
            readers.append((reader_weights, 0))
    if not readers or requantize.output[0] in graph.outputs:
        return None
    return _Padding(conv, -weight.dims[0] % multiple, source, [(weights, 0)], vectors, readers)


def _is_depthwise(conv: onnx.NodeProto, weight: onnx.TensorProto) -> bool:
    return _attribute(conv, "group", 1) == weight.dims[0] > 1 and weight.dims[1] == 1


def _padded_in_graph(graph: onnx.GraphProto, node: onnx.NodeProto, index: int, pads: str, mode: str) -> None:
    """Feed input ``index`` of ``node`` through a Pad of its initializer. ORT folds the constant Pad
    when it loads the model, so the kernel sees (and prepacks) the padded tensor while the file
    keeps the original one: the zero channels cost no stored bytes."""
    name = node.input[index]
    padded = f"{name}_padded"
    pad = onnx.helper.make_node("Pad", [name, pads], [padded], name=f"{name}_pad", mode=mode)
    graph.node.insert(list(graph.node).index(node), pad)
    node.input[index] = padded


def pad_depthwise_channels(
    model: onnx.ModelProto, multiple: int = DEPTHWISE_CHANNEL_MULTIPLE
) -> dict[str, int]:
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
    graph = model.graph
    view = _Graph(graph)
    sites = []
    for conv in graph.node:
        finder = {"QLinearConv": _qoperator_padding, "Conv": _qdq_padding}.get(conv.op_type)
        site = finder(view, conv, multiple) if finder is not None else None
        if site is not None and site.extra:
            sites.append(site)
    for site in sites:
        filters_node, filters_input = site.filters[0]
        dims = view.initializers[filters_node.input[filters_input]].dims  # [C, 1, *kernel]
        channels, rank = dims[0], len(dims)
        pad_amounts = {  # ONNX pads: every axis's start, then every axis's end
            "channels": [0] * (rank + 1) + [site.extra] + [0] * (rank - 2),  # axis 1: input, reader weights
            "filters": [0] * rank + [site.extra] + [0] * (rank - 1),  # axis 0 of the depthwise weights
            "vector": [0, site.extra],  # per-channel bias, scales and zero points
        }
        pads = {role: f"{site.conv.name}_pads_{role}" for role in pad_amounts}
        graph.initializer.extend(
            numpy_helper.from_array(np.array(pad_amounts[role], np.int64), pads[role]) for role in pad_amounts
        )
        for node, index in site.readers:
            _padded_in_graph(graph, node, index, pads["channels"], "constant")
        for node, index in site.filters:
            _padded_in_graph(graph, node, index, pads["filters"], "constant")
        for node, index, mode in site.vectors:
            _padded_in_graph(graph, node, index, pads["vector"], mode)
        site.conv.attribute.remove(next(a for a in site.conv.attribute if a.name == "group"))
        site.conv.attribute.append(onnx.helper.make_attribute("group", channels + site.extra))
        indices = f"{site.conv.name}_channel_indices"
        graph.initializer.append(
            numpy_helper.from_array(
                np.array([*range(channels), *[channels - 1] * site.extra], np.int32), indices
            )
        )
        padded_input = f"{site.conv.name}_input_padded"
        gather = onnx.helper.make_node(
            "Gather",
            [site.entry.input[0], indices],
            [padded_input],
            name=f"{site.conv.name}_channel_pad",
            axis=1,
        )
        graph.node.insert(list(graph.node).index(site.entry), gather)
        site.entry.input[0] = padded_input
    if sites:
        onnx.checker.check_model(model)
    return {site.conv.name: site.extra for site in sites}


def float_logits(model: onnx.ModelProto) -> list[str]:
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
    view = _Graph(graph)
    rewritten = []
    for dequantize in [node for node in graph.node if node.op_type == "DequantizeLinear"]:
        if dequantize.output[0] not in view.outputs or view.uses[dequantize.input[0]] != 1:
            continue
        producer = view.producers.get(dequantize.input[0])
        if producer is None:
            continue
        if producer.op_type == "QGemm" and producer.domain == "com.microsoft" and len(producer.input) > 7:
            del producer.input[7:]  # no y_scale, y_zero_point: float output
            while not producer.input[-1]:  # nor an empty bias name left at the end
                del producer.input[-1]
            producer.output[0] = dequantize.output[0]
            graph.node.remove(dequantize)
            rewritten.append(producer.name)
            continue
        gemm = view.producers.get(producer.input[0]) if producer.op_type == "QuantizeLinear" else None
        if gemm is not None and gemm.op_type == "Gemm" and view.uses[producer.input[0]] == 1:
            gemm.output[0] = dequantize.output[0]
            graph.node.remove(producer)
            graph.node.remove(dequantize)
            rewritten.append(gemm.name)
    _unused_initializers_removed(graph)
    return rewritten


# Ops whose output has the rank of their data inputs (given by index): the int8 graph's convs,
# pads, pools, (de)quantizers and ORT's int8 elementwise ops (inputs A, A scale, A zero point, B, ...);
# a Gather keeps it only with 1-D indices (_rank_keeping_inputs).
_RANK_KEEPING = {
    "QLinearConv": (0,),
    "Pad": (0,),
    "QuantizeLinear": (0,),
    "DequantizeLinear": (0,),
    "Relu": (0,),
    "QLinearAveragePool": (0,),
    "QLinearAdd": (0, 3),
    "QLinearMul": (0, 3),
}


def _rank_keeping_inputs(node: onnx.NodeProto, view: _Graph) -> tuple[int, ...] | None:
    """The data inputs whose rank ``node``'s output has, or None when it may change the rank."""
    if node.op_type == "Gather":  # with 1-D constant indices, as the depthwise channel padding's
        indices = view.initializers.get(node.input[1])
        return (0,) if indices is not None and len(indices.dims) == 1 else None
    return _RANK_KEEPING.get(node.op_type)


def channels_last_global_pools(model: onnx.ModelProto) -> list[str]:
    """Run each int8 mean over time channels-last, where ORT runs the conv before it.

    ORT's layout pass runs every int8 conv channels-last ([N, T, C]) and puts a Transpose back to
    [N, C, T] behind the last one, since the QLinearGlobalAveragePool that reads it is written
    channels-first. Written channels-last here (``channels_last=1`` behind an explicit Transpose),
    the pool's input Transpose cancels against ORT's, and its [N, 1, C] output flattens to the
    same [N, C] as [N, C, 1] does: one op fewer per call, the same integers. Only 1-D pools read by
    ``Flatten(axis=1)`` alone change; ``model`` changes in place. Returns the rewritten pools' names.
    """
    graph = model.graph
    view = _Graph(graph)
    shapes = _static_shapes(model)

    @cache
    def rank(tensor: str) -> int | None:
        # ONNX's shape inference stops at ORT's contrib ops (a residual block's QLinearAdd), and
        # every shape behind one is unknown to it; these ops keep their data inputs' rank.
        if shapes.get(tensor):
            return len(shapes[tensor])
        producer = view.producers.get(tensor)
        data_inputs = _rank_keeping_inputs(producer, view) if producer is not None else None
        if data_inputs is None:
            return None
        ranks = [rank(producer.input[index]) for index in data_inputs]
        return None if None in ranks else max(ranks)

    rewritten = []
    for pool in [node for node in graph.node if node.op_type == "QLinearGlobalAveragePool"]:
        reader = view.only_reader(pool.output[0])
        flattens = reader is not None and reader.op_type == "Flatten" and _attribute(reader, "axis", 1) == 1
        if _attribute(pool, "channels_last", 0) or not flattens or rank(pool.input[0]) != 3:
            continue
        channels_last = f"{pool.input[0]}_channels_last"
        transpose = onnx.helper.make_node(
            "Transpose",
            [pool.input[0]],
            [channels_last],
            name=f"{pool.name}_to_channels_last",
            perm=[0, 2, 1],
        )
        graph.node.insert(list(graph.node).index(pool), transpose)
        pool.input[0] = channels_last
        for attribute in [a for a in pool.attribute if a.name == "channels_last"]:
            pool.attribute.remove(attribute)
        pool.attribute.append(onnx.helper.make_attribute("channels_last", 1))
        rewritten.append(pool.name)
    return rewritten


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
    model = onnx.load(str(path))
    done = {
        "depthwise_channels_padded": pad_depthwise_channels(model, depthwise_channel_multiple),
        "float_logits": float_logits(model) if lean_tail else [],
        "channels_last_pools": channels_last_global_pools(model) if lean_tail else [],
    }
    if any(done.values()):
        del model.graph.value_info[:]  # the logits' type and the pools' shapes changed
        onnx.checker.check_model(model)
        partial = Path(path).with_name(Path(path).name + ".rewriting")
        onnx.save(model, str(partial))
        os.replace(partial, path)
    return done
