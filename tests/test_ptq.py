import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from prunequant.errors import UserError
from prunequant.measure import onnx_weight_bytes
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import (
    OnnxClassifier,
    channels_last_global_pools,
    count_quantized_ops,
    deployment_model,
    export_onnx,
    float_nodes_of,
    pad_depthwise_channels,
    quantizable_nodes,
    quantize_ptq,
    quantize_static_int8,
)
from prunequant.quantize.agreement import agreement
from prunequant.quantize.ptq import calibration_batch_size
from prunequant.quantize.runtime import session_options

TINY_SPEC = ModelSpec(in_channels=4, n_classes=3, blocks=(BlockSpec(5, 2, 16),))
TINY_LENGTH = 41  # odd: the deployment form crops one step, so the graph rewrite has work to do
SEED_SPEC = ModelSpec(in_channels=20, n_classes=10, blocks=(BlockSpec(25, 2, 140),))
SEED_LENGTH = 101


def export_random_model(spec: ModelSpec, length: int, path, seed: int = 0):
    """Deployment form of a randomly initialised model with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build_model(spec)
    for block in model.blocks:
        block.norm.running_mean.uniform_(0.0, 1.0)
        block.norm.running_var.uniform_(0.5, 2.0)
    return export_onnx(deployment_model(model.eval()), path, n_channels=spec.in_channels, length=length)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    return {
        "fp32": export_random_model(TINY_SPEC, TINY_LENGTH, directory / "fp32.onnx"),
        "train": rng.standard_normal((256, TINY_SPEC.in_channels, TINY_LENGTH), dtype=np.float32),
        "held_out": rng.standard_normal((128, TINY_SPEC.in_channels, TINY_LENGTH), dtype=np.float32),
        "dir": directory,
    }


@pytest.fixture(scope="module")
def seed_shaped(tmp_path_factory):
    directory = tmp_path_factory.mktemp("seed")
    rng = np.random.default_rng(1)
    return {
        "fp32": export_random_model(SEED_SPEC, SEED_LENGTH, directory / "fp32.onnx"),
        "train": rng.standard_normal((96, SEED_SPEC.in_channels, SEED_LENGTH), dtype=np.float32),
        "dir": directory,
    }


def run_ptq(setup, name: str, **settings) -> dict:
    recipe = {
        "calibration_samples": 64,
        "calibration_method": "MinMax",
        "quant_format": "QOperator",
        "per_channel": True,
    } | settings
    return quantize_ptq(
        fp32_path=setup["fp32"],
        int8_path=setup["dir"] / f"{name}.onnx",
        record_path=setup["dir"] / f"{name}.json",
        train_inputs=setup["train"],
        seed=0,
        **recipe,
    )


@pytest.mark.parametrize("count", [1, 63, 65, 200, None])
@pytest.mark.parametrize("method", ["MinMax", "Entropy", "Percentile"])
def test_every_calibration_method_works_with_any_count(tiny, method, count):
    percentile = {"percentile": 99.999} if method == "Percentile" else {}
    record = run_ptq(
        tiny, f"{method}_{count}", calibration_method=method, calibration_samples=count, **percentile
    )
    expected = len(tiny["train"]) if count is None else count
    assert record["calibration_samples"] == expected
    assert expected % record["calibration_batch"] == 0 and record["calibration_batch"] <= 64
    assert record["op_counts"].get("QLinearConv") == 2 and record["float_nodes"] == []
    assert record["percentile"] == (99.999 if method == "Percentile" else None)


@pytest.mark.parametrize(("n", "batch"), [(1, 1), (63, 63), (64, 64), (65, 13), (127, 1), (200, 50)])
def test_calibration_batch_divides_the_set(n, batch):
    assert calibration_batch_size(n) == batch


@pytest.mark.parametrize("method", ["Entropy", "Percentile", "MinMax"])
def test_calibration_ranges_do_not_depend_on_the_batching(tiny, method):
    # The equal-batch fix is only sound if the ranges are a function of the calibration set alone.
    scales = []
    for max_batch in (1, 64):
        path = quantize_static_int8(
            tiny["fp32"],
            tiny["dir"] / f"batching_{method}_{max_batch}.onnx",
            tiny["train"][:200],
            quant_format="QOperator",
            calibration_method=method,
            per_channel=True,
            batch_size=max_batch,
            percentile=99.999 if method == "Percentile" else None,
        )
        initializers = onnx.load(str(path)).graph.initializer
        scales.append(
            {t.name: onnx.numpy_helper.to_array(t) for t in initializers if t.name.endswith("_scale")}
        )
    assert scales[0].keys() == scales[1].keys() and len(scales[0]) >= 4
    for name in scales[0]:
        np.testing.assert_allclose(scales[0][name], scales[1][name], rtol=1e-5, err_msg=name)


def test_percentile_setting_reaches_the_calibrator(tiny):
    tight = run_ptq(tiny, "p90", calibration_method="Percentile", percentile=90.0)
    loose = run_ptq(tiny, "p99999", calibration_method="Percentile", percentile=99.999)
    assert (tight["percentile"], loose["percentile"]) == (90.0, 99.999)

    def input_scale(name):
        graph = onnx.load(str(tiny["dir"] / f"{name}.onnx")).graph
        (quantize_input,) = [node for node in graph.node if node.op_type == "QuantizeLinear"]
        weights = {t.name: t for t in graph.initializer}
        return float(onnx.numpy_helper.to_array(weights[quantize_input.input[1]]))

    assert input_scale("p90") < 0.5 * input_scale("p99999")  # a 90th percentile clips most of the tail


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_formats_and_scale_granularity_give_real_int8_kernels(tiny, tmp_path, quant_format, per_channel):
    record = run_ptq(
        tiny, f"{quant_format}_{per_channel}", quant_format=quant_format, per_channel=per_channel
    )
    path = tiny["dir"] / f"{quant_format}_{per_channel}.onnx"
    weights = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    assert weights["blocks.0.pointwise.weight_quantized"].data_type == onnx.TensorProto.INT8
    expected_dims = [TINY_SPEC.blocks[0].width] if per_channel else []
    assert list(weights["blocks.0.pointwise.weight_scale"].dims) == expected_dims
    assert record["float_nodes"] == [] and record["quantized_nodes"] == [
        n for n, _ in quantizable_nodes(tiny["fp32"])
    ]
    # What ORT actually runs: QDQ pairs must fuse into the same int8 kernels QOperator stores.
    running = Counter(_optimized_ops(path, tmp_path))
    assert running.get("QLinearConv") == 2 and "Conv" not in running and "FusedConv" not in running
    assert running.get("QLinearGlobalAveragePool") == 1, "the mean over time must run in int8 as well"
    assert "ReduceMean" not in running
    quality = agreement(
        OnnxClassifier(tiny["fp32"])(tiny["held_out"]), OnnxClassifier(path)(tiny["held_out"])
    )
    assert quality["agreement_pct"] >= 90.0


@pytest.mark.parametrize(("per_channel", "limit"), [(False, 0.30), (True, 0.33)])
def test_int8_weight_payload_is_under_a_third_of_fp32(seed_shaped, per_channel, limit):
    # int8 weights are 25% of fp32 and int32 biases add 3.3% on the seed model; per-channel scales
    # add one float32 scale and one int8 zero point per output channel (about 4% more).
    # Without the depthwise channel padding, whose extra bytes the next test counts.
    run_ptq(seed_shaped, f"payload_{per_channel}", per_channel=per_channel, depthwise_channel_multiple=1)
    int8_bytes = onnx_weight_bytes(seed_shaped["dir"] / f"payload_{per_channel}.onnx")
    assert int8_bytes <= limit * onnx_weight_bytes(seed_shaped["fp32"])


@pytest.mark.parametrize(("quant_format", "pads"), [("QOperator", 5), ("QDQ", 7)])
def test_depthwise_channel_padding_changes_no_output(seed_shaped, tmp_path, quant_format, pads):
    padded = run_ptq(seed_shaped, f"padded_{quant_format}", quant_format=quant_format)
    plain = run_ptq(
        seed_shaped, f"plain_{quant_format}", quant_format=quant_format, depthwise_channel_multiple=1
    )
    paths = {name: seed_shaped["dir"] / f"{name}_{quant_format}.onnx" for name in ("padded", "plain")}
    x = np.random.default_rng(5).standard_normal((64, 20, SEED_LENGTH), dtype=np.float32)
    np.testing.assert_array_equal(OnnxClassifier(paths["padded"])(x), OnnxClassifier(paths["plain"])(x))
    (depthwise,) = padded["depthwise_channels_padded"]
    assert padded["depthwise_channels_padded"] == {depthwise: 4} and plain["depthwise_channels_padded"] == {}
    conv = next(node for node in onnx.load(str(paths["padded"])).graph.node if node.name == depthwise)
    assert helper.get_attribute_value(next(a for a in conv.attribute if a.name == "group")) == 24
    # The weights are padded when ORT loads the model: the file stores only the pad amounts (int64)
    # and the input's channel indices (int32, 20 + 4).
    added_bytes = onnx_weight_bytes(paths["padded"]) - onnx_weight_bytes(paths["plain"])
    assert added_bytes == 8 * (6 + 6 + 2) + 4 * 24
    # the depthwise weights, scales, zero points (and in QDQ the bias's scales and zero points),
    # the bias, the pointwise weights; the input's extra channels come from a Gather
    assert padded["op_counts"]["Pad"] == pads and padded["op_counts"]["Gather"] == 1
    # ORT gathers the channels-first input before its layout Transpose, not after it (a Gather
    # along the innermost axis costs several times more).
    ops = _optimized_ops(paths["padded"], tmp_path)
    assert ops.index("Gather") < ops.index("Transpose")
    for key in ("QLinearConv", "QuantizeLinear", "DequantizeLinear", "Conv"):
        assert padded["op_counts"].get(key) == plain["op_counts"].get(key)


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_depthwise_channel_padding_keeps_a_residual_models_outputs(tmp_path, quant_format):
    spec = RESIDUAL_SPEC
    setup = {
        "fp32": export_random_model(spec, 64, tmp_path / "fp32.onnx"),
        "train": np.random.default_rng(0).standard_normal((64, 6, 64), dtype=np.float32),
        "dir": tmp_path,
    }
    padded = run_ptq(setup, "padded", quant_format=quant_format)
    run_ptq(setup, "plain", quant_format=quant_format, depthwise_channel_multiple=1)
    x = np.random.default_rng(1).standard_normal((32, 6, 64), dtype=np.float32)
    outputs = [OnnxClassifier(tmp_path / f"{name}.onnx")(x) for name in ("padded", "plain")]
    np.testing.assert_array_equal(*outputs)
    # QOperator pads all three depthwise convs (6 -> 8, 12 -> 16 twice). In QDQ a residual block's
    # input reaches its depthwise conv through the zero Pad of the 'same' padding, not straight
    # from a DequantizeLinear of its own, so those convs are left as they are.
    expected = [2, 4, 4] if quant_format == "QOperator" else []
    assert sorted(padded["depthwise_channels_padded"].values()) == expected


def _optimized_ops(path, tmp_path) -> list[str]:
    """The op types ORT runs for ``path`` (ORT_ENABLE_ALL), in order."""
    options = session_options()
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_lean_tail_runs_fewer_ops_with_the_same_integers(seed_shaped, tmp_path, quant_format):
    lean = run_ptq(seed_shaped, f"lean_{quant_format}", quant_format=quant_format)
    full = run_ptq(seed_shaped, f"full_{quant_format}", quant_format=quant_format, lean_tail=False)
    paths = {name: seed_shaped["dir"] / f"{name}_{quant_format}.onnx" for name in ("lean", "full")}
    assert lean["float_logits"] == [
        next(n for n, op in quantizable_nodes(seed_shaped["fp32"]) if op == "Gemm")
        + ("_quant" if quant_format == "QOperator" else "")
    ]
    assert (full["float_logits"], full["channels_last_pools"]) == ([], [])
    # QDQ's pool is a standard GlobalAveragePool, which has no channels-last form.
    assert len(lean["channels_last_pools"]) == (1 if quant_format == "QOperator" else 0)

    running = {name: _optimized_ops(path, tmp_path) for name, path in paths.items()}
    assert running["full"][-1] == "DequantizeLinear" and running["lean"][-1] == "QGemm"
    assert "Gemm" not in running["lean"], "the head must still run in int8"
    transposes_saved = 1 if quant_format == "QOperator" else 0
    assert running["lean"].count("Transpose") == running["full"].count("Transpose") - transposes_saved
    assert len(running["lean"]) == len(running["full"]) - 1 - transposes_saved

    x = np.random.default_rng(6).standard_normal((256, 20, SEED_LENGTH), dtype=np.float32)
    outputs = {name: OnnxClassifier(path)(x) for name, path in paths.items()}
    # The same int32 sums: float logits differ from the dequantized uint8 ones by at most half a
    # step of the logits' quantizer, the rounding they skip, wherever that quantizer did not clip.
    graph = onnx.load(str(paths["full"])).graph
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    step, zero_point = (float(initializers[name]) for name in graph.node[-1].input[1:3])
    codes = np.rint(outputs["full"] / step + zero_point)
    inside = (codes > 0) & (codes < 255)
    assert inside.mean() > 0.5
    difference = np.abs(outputs["lean"] - outputs["full"])[inside]
    assert 0 < difference.max() <= 0.5 * step * (1 + 1e-4)
    fp32 = OnnxClassifier(seed_shaped["fp32"])(x)
    assert np.abs(outputs["lean"] - fp32).mean() < np.abs(outputs["full"] - fp32).mean()


RESIDUAL_SPEC = ModelSpec(
    6, 4, (BlockSpec(5, 2, 12), BlockSpec(3, 1, 12), BlockSpec(3, 1, 20)), arch="residual"
)


@pytest.mark.parametrize("arch", ["separable", "residual"])
def test_channels_last_pool_gives_the_same_integers(seed_shaped, tmp_path, arch):
    if arch == "residual":  # the pool reads a QLinearAdd, which ONNX's shape inference cannot see through
        spec, length = RESIDUAL_SPEC, 64
        setup = {
            "fp32": export_random_model(spec, length, tmp_path / "fp32.onnx"),
            "train": np.random.default_rng(0).standard_normal(
                (64, spec.in_channels, length), dtype=np.float32
            ),
            "dir": tmp_path,
        }
    else:
        spec, length, setup = SEED_SPEC, SEED_LENGTH, seed_shaped
    run_ptq(setup, f"pool_before_{arch}", lean_tail=False)
    before = setup["dir"] / f"pool_before_{arch}.onnx"
    (fp32_pool,) = [
        n.name for n in onnx.load(str(setup["fp32"])).graph.node if n.op_type == "GlobalAveragePool"
    ]
    model = ir.load(before)
    assert channels_last_global_pools(model) == [f"{fp32_pool}_quant"]
    assert channels_last_global_pools(model) == []  # already channels-last: left alone
    ir.save(model, tmp_path / "pool_after.onnx")
    running = {
        name: _optimized_ops(path, tmp_path)
        for name, path in (("before", before), ("after", tmp_path / "pool_after.onnx"))
    }
    assert running["after"].count("Transpose") == running["before"].count("Transpose") - 1
    x = np.random.default_rng(7).standard_normal((64, spec.in_channels, length), dtype=np.float32)
    np.testing.assert_array_equal(OnnxClassifier(tmp_path / "pool_after.onnx")(x), OnnxClassifier(before)(x))


def _depthwise_then_pointwise(channels: int, *, pointwise: bool = True) -> onnx.ModelProto:
    """uint8 [N, channels, 9] → depthwise QLinearConv (k=3) → pointwise QLinearConv to 4 channels."""
    rng = np.random.default_rng(channels)

    def qlinear_conv(name, x, y, weight, group):
        out = weight.shape[0]
        values = {
            f"{name}_x_scale": np.float32(0.05),
            f"{name}_x_zero_point": np.uint8(120),
            f"{name}_w": weight,
            f"{name}_w_scale": rng.uniform(0.01, 0.02, out).astype(np.float32),
            f"{name}_w_zero_point": np.zeros(out, np.int8),
            f"{name}_y_scale": np.float32(0.2),
            f"{name}_y_zero_point": np.uint8(128),
            f"{name}_bias": rng.integers(-50, 50, out, dtype=np.int32),
        }
        node = helper.make_node("QLinearConv", [x, *values], [y], name=name, group=group)  # ONNX's order
        return node, [onnx.numpy_helper.from_array(v, k) for k, v in values.items()]

    depthwise, dw_values = qlinear_conv(
        "dw", "x", "h", rng.integers(-127, 128, (channels, 1, 3), dtype=np.int8), channels
    )
    nodes, values, last = [depthwise], dw_values, ("h", channels, 7)
    if pointwise:
        node, pw_values = qlinear_conv(
            "pw", "h", "y", rng.integers(-127, 128, (4, channels, 1), dtype=np.int8), 1
        )
        nodes, values, last = [depthwise, node], dw_values + pw_values, ("y", 4, 7)
    graph = helper.make_graph(
        nodes,
        "depthwise_pointwise",
        [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, ["batch", channels, 9])],
        [helper.make_tensor_value_info(last[0], onnx.TensorProto.UINT8, ["batch", last[1], last[2]])],
        values,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("channels", [5, 12, 16])
def test_depthwise_channel_padding_computes_the_same_integers(tmp_path, channels):
    original = _depthwise_then_pointwise(channels)
    model = ir.from_proto(original)
    padded = pad_depthwise_channels(model)
    if channels % 8 == 0:
        assert padded == {} and [node.op_type for node in model.graph] == ["QLinearConv"] * 2
        return
    assert padded == {"dw": -channels % 8}
    onnx.save(original, str(tmp_path / "plain.onnx"))
    ir.save(model, tmp_path / "padded.onnx")
    x = np.random.default_rng(1).integers(0, 256, (6, channels, 9), dtype=np.uint8)
    outputs = [
        ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for name in ("plain.onnx", "padded.onnx")
    ]
    assert len(np.unique(outputs[0])) > 10
    np.testing.assert_array_equal(outputs[1], outputs[0])


def test_depthwise_channel_padding_skips_a_conv_no_pointwise_conv_reads():
    # Its zero channels would reach the model's output: nothing drops them.
    model = ir.from_proto(_depthwise_then_pointwise(12, pointwise=False))
    assert pad_depthwise_channels(model) == {}
    assert [node.op_type for node in model.graph] == ["QLinearConv"]


RELOAD_SCRIPT = """
import sys
import numpy as np
from prunequant.quantize import OnnxClassifier
inputs = np.load(sys.argv[2])
np.save(sys.argv[3], OnnxClassifier(sys.argv[1])(inputs))
"""


def test_quantized_model_reloads_in_a_fresh_process(tiny, tmp_path):
    run_ptq(tiny, "reload", calibration_method="Entropy", calibration_samples=200)
    path = tiny["dir"] / "reload.onnx"
    np.save(tmp_path / "inputs.npy", tiny["held_out"])
    subprocess.run(
        [
            sys.executable,
            "-c",
            RELOAD_SCRIPT,
            str(path),
            str(tmp_path / "inputs.npy"),
            str(tmp_path / "out.npy"),
        ],
        check=True,
        timeout=120,
    )
    reloaded = np.load(tmp_path / "out.npy")
    here = OnnxClassifier(path)(tiny["held_out"])
    np.testing.assert_array_equal(reloaded.argmax(1), here.argmax(1))
    np.testing.assert_allclose(reloaded, here, rtol=0, atol=1e-6)


def test_record_describes_the_recipe(tiny):
    record = run_ptq(tiny, "record", calibration_method="Percentile", percentile=99.9, quant_format="QDQ")
    assert json.loads((tiny["dir"] / "record.json").read_text()) == record
    assert record["onnxruntime_version"] == ort.__version__
    assert record["calibration_samples_setting"] == 64 and record["seed"] == 0
    assert (record["quant_format"], record["per_channel"], record["percentile"]) == ("QDQ", True, 99.9)
    assert record["op_counts"] == count_quantized_ops(tiny["dir"] / "record.onnx")


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_excluded_layers_stay_float(tiny, quant_format):
    (depthwise, _), (_, _), (head, _) = quantizable_nodes(tiny["fp32"])
    record = run_ptq(
        tiny, f"exclude_{quant_format}", quant_format=quant_format, nodes_to_exclude=[depthwise, head]
    )
    path = tiny["dir"] / f"exclude_{quant_format}.onnx"
    assert float_nodes_of(path) == record["float_nodes"] == [depthwise, head]
    assert len(record["quantized_nodes"]) == 1


def test_unknown_excluded_node_is_rejected(tiny):
    with pytest.raises(UserError, match="nodes_to_exclude"):
        run_ptq(tiny, "unknown", nodes_to_exclude=["no_such_conv"])
    assert not (tiny["dir"] / "unknown.onnx").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"percentile": None, "calibration_method": "Percentile"}, "needs a percentile"),
        ({"percentile": 0.0}, "percentile"),
        ({"percentile": 100.5}, "percentile"),
        ({"calibration_samples": 0}, ">= 1"),
    ],
)
def test_bad_settings_are_rejected(tiny, settings, message):
    with pytest.raises(UserError, match=message):
        run_ptq(tiny, "bad", **settings)


# ------------------------------------------------------------- one deployment graph for fp32 and int8

# What quantization turns each fp32 op into; (de)quantization ops have no fp32 counterpart.
INT8_OF_FP32 = {
    "QLinearConv": "Conv",
    "QGemm": "Gemm",
    "QLinearGlobalAveragePool": "GlobalAveragePool",
    "QLinearAveragePool": "AveragePool",
    "QLinearAdd": "Add",
}
QUANTIZATION_OPS = {"QuantizeLinear", "DequantizeLinear"}


def int8_only_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes the int8-only rewrites add, found by what they do: Pads of stored weights and
    Gathers of the depthwise input's channels (the channel padding), and Transposes into a
    channels-last pool (the short tail)."""
    initializers = {tensor.name for tensor in graph.initializer}
    readers = {name: node for node in graph.node for name in node.input}
    added = []
    for node in graph.node:
        pads_weights = node.op_type == "Pad" and node.input[0] in initializers
        gathers_channels = node.op_type == "Gather" and node.name.endswith("_channel_pad")
        reader = readers.get(node.output[0])
        feeds_channels_last = (
            node.op_type == "Transpose"
            and reader is not None
            and any(a.name == "channels_last" and a.i == 1 for a in reader.attribute)
        )
        if pads_weights or gathers_channels or feeds_channels_last:
            added.append(node.name)
    return added


def fp32_op_sequence(path) -> list[str]:
    """Op types in graph order, without the ReLUs right after a Conv or an Add: ORT's quantizer
    folds each into that op (its output range starts at 0)."""
    graph = onnx.load(str(path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    fused = {
        node.name
        for node in graph.node
        if node.op_type == "Relu" and producers[node.input[0]].op_type in ("Conv", "Add")
    }
    return [node.op_type for node in graph.node if node.name not in fused]


def int8_op_sequence(path) -> list[str]:
    """Op types in graph order, each int8 op named by its fp32 op, without (de)quantization and
    without the nodes the int8-only rewrites add."""
    graph = onnx.load(str(path)).graph
    added = set(int8_only_nodes(graph))
    return [
        INT8_OF_FP32.get(node.op_type, node.op_type)
        for node in graph.node
        if node.name not in added and node.op_type not in QUANTIZATION_OPS
    ]


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
@pytest.mark.parametrize(
    ("spec", "length"),
    # Every last block output is odd: separable stacks crop their input, a residual one its end.
    [
        (TINY_SPEC, TINY_LENGTH),
        (ModelSpec(6, 4, (BlockSpec(5, 2, 12), BlockSpec(3, 1, 8))), 40),
        (RESIDUAL_SPEC, 76),
    ],
    ids=["separable", "separable-2-blocks", "residual"],
)
def test_fp32_and_int8_graphs_differ_only_by_quantization(tmp_path, spec, length, quant_format):
    setup = {
        "fp32": export_random_model(spec, length, tmp_path / "fp32.onnx"),
        "train": np.random.default_rng(0).standard_normal((64, spec.in_channels, length), dtype=np.float32),
        "dir": tmp_path,
    }
    record = run_ptq(setup, "int8", quant_format=quant_format)
    fp32_ops = fp32_op_sequence(setup["fp32"])
    assert {"Slice", "GlobalAveragePool"} <= set(fp32_ops) and "ReduceMean" not in fp32_ops
    assert not {"Pad", "Gather", "Transpose"} & set(fp32_ops), "the ops the int8-only rewrites add"
    assert int8_op_sequence(tmp_path / "int8.onnx") == fp32_ops
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    added = Counter(node.op_type for node in graph.node if node.name in set(int8_only_nodes(graph)))
    assert set(added) <= {"Pad", "Gather", "Transpose"}
    assert added["Gather"] == len(record["depthwise_channels_padded"])
    if quant_format == "QOperator":  # (QDQ leaves a residual block's convs unpadded)
        assert record["depthwise_channels_padded"] and added["Pad"] > added["Gather"]
    assert added["Transpose"] == len(record["channels_last_pools"])


QUANTIZE_WITHOUT_TORCH = """
import sys
import numpy as np
from prunequant.quantize.ptq import quantize_ptq
quantize_ptq(fp32_path=sys.argv[1], int8_path=sys.argv[2], record_path=sys.argv[3],
             train_inputs=np.load(sys.argv[4]), seed=0, calibration_samples=64,
             calibration_method="MinMax", quant_format="QOperator", per_channel=True)
print(sorted(name for name in sys.modules if name == "torch" or name.startswith("torch.")))
"""


def test_quantizing_never_imports_torch(tiny, tmp_path):
    # A quantize job runs on ONNX files only: importing torch would cost it seconds of start-up.
    np.save(tmp_path / "train.npy", tiny["train"])
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            QUANTIZE_WITHOUT_TORCH,
            str(tiny["fp32"]),
            str(tmp_path / "int8.onnx"),
            str(tmp_path / "int8.json"),
            str(tmp_path / "train.npy"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]"
    assert count_quantized_ops(tmp_path / "int8.onnx")["QLinearConv"] == 2


def test_a_recipe_runs_the_method_it_names(tiny):
    from types import SimpleNamespace

    from prunequant.quantize.recipes import quantize_by_recipe

    labels = np.arange(len(tiny["train"])) % TINY_SPEC.n_classes
    dataset = SimpleNamespace(
        X_train=tiny["train"], X_val=tiny["held_out"], y_val=labels[: len(tiny["held_out"])]
    )
    recipe = {
        "calibration_samples": 64,
        "calibration_method": "MinMax",
        "quant_format": "QOperator",
        "per_channel": True,
    }
    paths = {"fp32_path": tiny["fp32"], "seed": 0}
    ptq = quantize_by_recipe(
        {"method": "ptq", **recipe},
        dataset=dataset,
        int8_path=tiny["dir"] / "by_recipe.onnx",
        record_path=tiny["dir"] / "by_recipe.json",
        **paths,
    )
    assert ptq == run_ptq(tiny, "by_hand", **recipe) | {"float_nodes": ptq["float_nodes"]}
    partial = quantize_by_recipe(
        {"method": "partial", "budget_pp": 100.0, **recipe},
        dataset=dataset,
        int8_path=tiny["dir"] / "partial.onnx",
        record_path=tiny["dir"] / "partial.json",
        **paths,
    )
    assert "layers" in partial and partial["budget_pp"] == 100.0  # the partial method's record
    with pytest.raises(ValueError, match="not a post-training method"):
        quantize_by_recipe(
            {"method": "qat", **recipe}, dataset=dataset, int8_path="x", record_path="y", **paths
        )
