import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from prunequant.errors import UserError
from prunequant.measure import file_bytes, onnx_weight_bytes
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import (
    OnnxClassifier,
    count_quantized_ops,
    deployment_model,
    export_onnx,
    fold_batchnorm,
    has_int8_ops,
    quantize_static_int8,
)
from prunequant.quantize.agreement import agreement
from prunequant.quantize.fold import input_steps_used

SEED_SPEC = ModelSpec(in_channels=20, n_classes=10, blocks=(BlockSpec(25, 2, 140),))
TWO_BLOCK_SPEC = ModelSpec(in_channels=6, n_classes=4, blocks=(BlockSpec(7, 2, 24), BlockSpec(5, 1, 16)))
PRUNED_SPEC = ModelSpec(in_channels=5, n_classes=3, blocks=(BlockSpec(9, 2, 13), BlockSpec(3, 1, 7)))


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm statistics far from the identity, so a wrong fold shows."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator))
            module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            with torch.no_grad():
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))


@pytest.mark.parametrize(
    ("spec", "length"),
    [(SEED_SPEC, 101), (TWO_BLOCK_SPEC, 64), (PRUNED_SPEC, 50)],
    ids=["seed", "2-block", "pruned"],
)
def test_fold_batchnorm_preserves_outputs(spec, length):
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = build_model(spec)
    randomize_batchnorm(model, generator)
    model.eval()
    x = torch.randn(8, spec.in_channels, length, generator=generator)

    folded = fold_batchnorm(model)

    assert not folded.training
    assert all(isinstance(block.norm, nn.Identity) for block in folded.blocks)
    assert all(isinstance(block.norm, nn.BatchNorm1d) for block in model.blocks), "original must be untouched"
    with torch.no_grad():
        expected, actual = model(x), folded(x)
    assert expected.abs().max() > 0.1, "outputs too small for the comparison to mean anything"
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


RESIDUAL_SPEC = ModelSpec(
    in_channels=6, n_classes=4, blocks=(BlockSpec(7, 2, 24), BlockSpec(5, 1, 16)), arch="residual"
)


@pytest.mark.parametrize("spec", [TWO_BLOCK_SPEC, RESIDUAL_SPEC], ids=["separable", "residual"])
@pytest.mark.parametrize("length", [64, 65, 67])
def test_deployment_model_computes_the_same_function(spec, length):
    generator = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = build_model(spec)
    randomize_batchnorm(model, generator)
    model.eval()
    deployed = deployment_model(model)
    assert isinstance(model.blocks[-1].pool, nn.AvgPool1d), "original must be untouched"
    assert not isinstance(deployed.blocks[-1].pool, nn.AvgPool1d)
    assert isinstance(deployed.blocks[0].pool, nn.AvgPool1d)  # earlier pools feed convs: kept
    x = torch.randn(5, spec.in_channels, length, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("length", "steps"),
    # 64 steps: conv 29, pool 14, conv 10 (even: nothing to crop); 67: 31, 15, 11 -> 10 kept, which
    # read 14 pooled steps, 28 conv steps, 61 input steps; 68 and 67 need the same 61.
    [(64, 64), (67, 61), (68, 61)],
)
def test_input_crop_keeps_exactly_the_steps_the_last_crop_uses(length, steps):
    windows = tuple((block.kernel_size, block.stride) for block in TWO_BLOCK_SPEC.blocks)
    assert input_steps_used(length, windows) == steps
    generator = torch.Generator().manual_seed(4)
    model = build_model(TWO_BLOCK_SPEC).eval()
    randomize_batchnorm(model, generator)
    x = torch.randn(3, TWO_BLOCK_SPEC.in_channels, length, generator=generator)
    changed = x.clone()
    changed[..., steps:] = 1e3  # steps past the crop reach no output
    with torch.no_grad():
        torch.testing.assert_close(deployment_model(model)(changed), model(x), atol=1e-5, rtol=1e-5)
        if steps < length:  # a crop keeps no step more than needed: its last one reaches the output
            changed[..., steps - 1] = 1e3
            assert (model(changed) - model(x)).abs().max() > 1e-3


@pytest.mark.parametrize("spec", [TWO_BLOCK_SPEC, RESIDUAL_SPEC], ids=["separable", "residual"])
@pytest.mark.parametrize("length", [64, 67])
def test_fp32_onnx_predicts_what_the_torch_model_does(tmp_path, spec, length):
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    model = build_model(spec)
    randomize_batchnorm(model, generator)
    model.eval()
    path = export_onnx(
        deployment_model(model), tmp_path / "fp32.onnx", n_channels=spec.in_channels, length=length
    )
    x = torch.randn(64, spec.in_channels, length, generator=generator)
    with torch.no_grad():
        expected = model(x).numpy()
    actual = OnnxClassifier(path)(x.numpy())
    assert np.abs(expected).max() > 0.1, "outputs too small for the comparison to mean anything"
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(actual.argmax(1), expected.argmax(1))
    ops = count_quantized_ops(path)
    assert ops.get("GlobalAveragePool") == 1 and "ReduceMean" not in ops, "the mean must be a global pool"
    assert "BatchNormalization" not in ops
    # Separable blocks crop the model input; a residual stack crops behind its last block.
    graph = onnx.load(str(path)).graph
    crops = [node for node in graph.node if node.op_type == "Slice"]
    if length == 64:
        assert crops == [], "an even last block output needs no crop"
    elif spec.arch == "separable":
        assert [crop.input[0] for crop in crops] == ["input"]
    else:
        (crop,) = crops
        assert next(n for n in graph.node if crop.input[0] in n.output).op_type == "Relu"


def test_fold_batchnorm_uses_running_stats_of_a_training_mode_model(randomized_bn_model):
    model = randomized_bn_model.train()
    folded = fold_batchnorm(model)
    assert model.training, "folding must not change the original's mode"
    assert all(p.dtype == torch.float32 for p in folded.parameters())
    x = torch.randn(5, 4, 40)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model.eval()(x), atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_is_idempotent():
    generator = torch.Generator().manual_seed(2)
    model = build_model(TWO_BLOCK_SPEC)
    randomize_batchnorm(model, generator)
    once = fold_batchnorm(model.eval())
    twice = fold_batchnorm(once)
    x = torch.randn(4, 6, 64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(twice(x), once(x), atol=0, rtol=0)


# ---------------------------------------------------------------- a small trained model, shared

# Seed-model shape: on much smaller models ONNX container overhead outweighs the weights,
# and an int8 file can be larger than the fp32 one.
N_CHANNELS, LENGTH, N_CLASSES = 20, 101, 4
SMALL_SPEC = ModelSpec(in_channels=N_CHANNELS, n_classes=N_CLASSES, blocks=(BlockSpec(25, 2, 140),))


def synthetic_dataset(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each class is a sinusoid of its own frequency in its own channel, under noise."""
    labels = rng.integers(0, N_CLASSES, size=n)
    t = np.arange(LENGTH)
    x = rng.normal(0.0, 1.5, size=(n, N_CHANNELS, LENGTH))  # noisy enough that not every sample is easy
    phases = rng.uniform(0, 2 * np.pi, size=n)
    for i, label in enumerate(labels):
        x[i, label % N_CHANNELS] += np.sin(2 * np.pi * (label + 2) * t / LENGTH + phases[i])
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = synthetic_dataset(512, rng)
    x_test, y_test = synthetic_dataset(256, rng)
    model = build_model(SMALL_SPEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(60):
        idx = torch.from_numpy(rng.integers(0, len(xt), size=32))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        optimizer.step()
    model.eval()
    directory = tmp_path_factory.mktemp("onnx")
    fp32_path = export_onnx(
        deployment_model(model), directory / "fp32.onnx", n_channels=N_CHANNELS, length=LENGTH
    )
    return {
        "model": model,
        "x_train": x_train,
        "x_test": x_test,
        "y_test": y_test,
        "fp32": fp32_path,
        "dir": directory,
    }


def test_trained_model_learned_something(trained):
    with torch.no_grad():
        predictions = trained["model"](torch.from_numpy(trained["x_test"])).argmax(1).numpy()
    accuracy = (predictions == trained["y_test"]).mean()
    assert accuracy > 0.6  # chance is 0.25: the int8 agreement test below is on a real decision surface


@pytest.mark.parametrize("batch", [1, 7])
def test_export_onnx_matches_torch(trained, batch):
    x = trained["x_test"][:batch]
    with torch.no_grad():
        expected = trained["model"](torch.from_numpy(x)).numpy()
    actual = OnnxClassifier(trained["fp32"])(x)
    assert actual.shape == (batch, N_CLASSES) and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)


def test_export_onnx_graph_interface(trained):
    model = onnx.load(str(trained["fp32"]))
    onnx.checker.check_model(model)
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "logits")
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value"), "batch dimension must be dynamic"
    assert [d.dim_value for d in dims[1:]] == [N_CHANNELS, LENGTH]
    ops = count_quantized_ops(trained["fp32"])
    assert "BatchNormalization" not in ops and ops["Conv"] == 2
    assert "AveragePool" not in ops, "the last block's pooling must become a crop"
    assert ops["GlobalAveragePool"] == 1 and "ReduceMean" not in ops
    assert not has_int8_ops(ops)
    assert all(len(node.metadata_props) == 0 for node in model.graph.node), "debug metadata must be stripped"


def top1_agreement(fp32_path, int8_path, x) -> float:
    return float((OnnxClassifier(int8_path).predict(x) == OnnxClassifier(fp32_path).predict(x)).mean())


def test_quantize_qoperator_uses_int8_kernels(trained):
    int8_path = quantize_static_int8(
        trained["fp32"],
        trained["dir"] / "qop.onnx",
        trained["x_train"][:128],
        quant_format="QOperator",
        calibration_method="MinMax",
        per_channel=True,
        batch_size=32,
    )
    ops = count_quantized_ops(int8_path)
    assert ops.get("QLinearConv") == 2 and "Conv" not in ops
    assert has_int8_ops(ops)
    weights = {t.name: t for t in onnx.load(str(int8_path)).graph.initializer}
    assert weights["blocks.0.pointwise.weight_quantized"].data_type == onnx.TensorProto.INT8
    assert list(weights["blocks.0.pointwise.weight_scale"].dims) == [140], "one scale per output channel"
    assert top1_agreement(trained["fp32"], int8_path, trained["x_test"]) >= 0.9
    assert file_bytes(int8_path) < file_bytes(trained["fp32"])
    assert onnx_weight_bytes(int8_path) < 0.5 * onnx_weight_bytes(trained["fp32"])


def test_quantize_qdq_wraps_conv_in_quantize_dequantize(trained):
    int8_path = quantize_static_int8(
        trained["fp32"],
        trained["dir"] / "qdq.onnx",
        trained["x_train"][:128],
        quant_format="QDQ",
        calibration_method="MinMax",
        per_channel=True,
        batch_size=32,
    )
    ops = count_quantized_ops(int8_path)
    assert ops.get("QuantizeLinear", 0) >= 2 and ops.get("DequantizeLinear", 0) >= 4 and ops["Conv"] == 2
    assert top1_agreement(trained["fp32"], int8_path, trained["x_test"]) >= 0.9
    assert file_bytes(int8_path) < file_bytes(trained["fp32"])


@pytest.mark.parametrize("method", ["Entropy", "Percentile"])
def test_quantize_other_calibration_methods(trained, method):
    int8_path = quantize_static_int8(
        trained["fp32"],
        trained["dir"] / f"{method}.onnx",
        trained["x_train"][:128],
        quant_format="QOperator",
        calibration_method=method,
        per_channel=False,
        batch_size=64,
        percentile=99.99 if method == "Percentile" else None,
    )
    weights = {t.name: t for t in onnx.load(str(int8_path)).graph.initializer}
    assert list(weights["blocks.0.pointwise.weight_scale"].dims) == [], "one scale per tensor"
    assert top1_agreement(trained["fp32"], int8_path, trained["x_test"]) >= 0.9


def test_quantize_agreement_depends_on_calibration(trained):
    # Ranges from inputs 20x too small clip real activations: the agreement check must catch it.
    int8_path = quantize_static_int8(
        trained["fp32"],
        trained["dir"] / "miscalibrated.onnx",
        trained["x_train"][:128] * 0.05,
        quant_format="QOperator",
        calibration_method="MinMax",
        per_channel=True,
        batch_size=32,
    )
    assert top1_agreement(trained["fp32"], int8_path, trained["x_test"]) < 0.5


def test_quantize_is_deterministic(trained):
    paths = [
        quantize_static_int8(
            trained["fp32"],
            trained["dir"] / f"det{i}.onnx",
            trained["x_train"][:64],
            quant_format="QOperator",
            calibration_method="MinMax",
            per_channel=True,
            batch_size=16,
        )
        for i in range(2)
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "calibration_shape", "error", "message"),
    [
        ({"quant_format": "QInt8"}, (8, N_CHANNELS, LENGTH), UserError, "quant_format 'QInt8' is not known"),
        ({"calibration_method": "KL"}, (8, N_CHANNELS, LENGTH), UserError, "calibration_method 'KL' is not"),
        ({"percentile": 0.0}, (8, N_CHANNELS, LENGTH), UserError, "percentile"),
        ({}, (0, N_CHANNELS, LENGTH), ValueError, "empty"),
        ({}, (N_CHANNELS, LENGTH), ValueError, r"\[N, C, T\]"),
        ({"batch_size": 0}, (8, N_CHANNELS, LENGTH), ValueError, "batch_size"),
    ],
)
def test_quantize_rejects_bad_arguments(trained, kwargs, calibration_shape, error, message):
    target = trained["dir"] / "bad.onnx"
    arguments = {"quant_format": "QOperator", "calibration_method": "MinMax", "per_channel": True} | kwargs
    with pytest.raises(error, match=message):
        quantize_static_int8(trained["fp32"], target, np.zeros(calibration_shape, np.float32), **arguments)
    assert not target.exists()


def test_onnx_classifier_thread_settings(trained):
    classifier = OnnxClassifier(trained["fp32"], threads=2)
    options = classifier.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    logits = classifier(trained["x_test"][:64].astype(np.float64))  # converted, not rejected
    assert logits.shape == (64, N_CLASSES)
    np.testing.assert_array_equal(classifier.predict(trained["x_test"][:64]), logits.argmax(1))


def test_agreement_counts_top1_matches_and_logit_errors():
    parent = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]], np.float32)
    child = np.array([[0.5, 0.2], [1.0, 0.5], [2.0, 1.0], [0.0, 3.0]], np.float32)
    result = agreement(parent, child)
    assert result["agreement_pct"] == pytest.approx(75.0)  # only the second sample changes class
    assert result["mean_abs_logit_error"] == pytest.approx((0.5 + 0.2 + 1.0 + 0.5) / 8)
    assert result["max_abs_logit_error"] == pytest.approx(1.0)
    assert agreement(parent, parent) == {
        "agreement_pct": 100.0,
        "mean_abs_logit_error": 0.0,
        "max_abs_logit_error": 0.0,
    }


@pytest.mark.parametrize(("parent_shape", "child_shape"), [((4, 3), (4, 2)), ((4,), (4,)), ((0, 3), (0, 3))])
def test_agreement_rejects_mismatched_or_empty_logits(parent_shape, child_shape):
    with pytest.raises(ValueError, match="logits"):
        agreement(np.zeros(parent_shape), np.zeros(child_shape))


def test_onnx_classifier_runs_all_graph_optimisations(trained):
    options = OnnxClassifier(trained["fp32"]).session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
