"""Quantization-aware training: the STE, the match with the deployed int8 graph, training and resume."""

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import write_prepared_dataset
from test_ptq import fp32_op_sequence, int8_op_sequence
from torch import nn

import prunequant.engine
from prunequant.checkpoint import load_model
from prunequant.distill import Teacher
from prunequant.engine import TrainConfig, train
from prunequant.errors import UserError
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import OnnxClassifier, deployment_model, export_onnx
from prunequant.quantize.fake_quant import ActivationFakeQuant, FakeQuantModel
from prunequant.quantize.qat import load_qat
from prunequant.quantize.qat_convert import convert_to_int8
from prunequant.stages.qat import QatRecipe
from prunequant.stages.qat import run_qat as run_qat_stage

SPEC = ModelSpec(in_channels=4, n_classes=3, blocks=(BlockSpec(5, 2, 16), BlockSpec(3, 1, 12)))
LENGTH = 40


def run_qat(*, distillation=None, teacher_path=None, **settings):
    """The QAT stage with its recipe's fields given flat, as a config's recipe entry holds them."""
    fields = {field.name for field in dataclasses.fields(QatRecipe)}
    recipe = QatRecipe(**{key: settings.pop(key) for key in list(settings) if key in fields})
    return run_qat_stage(recipe=recipe, teacher=Teacher.of(distillation, teacher_path), **settings)


QAT_SETTINGS = {
    "seed": 0,
    "device": "cpu",
    "lr": 1e-3,
    "batch_size": 16,
    "weight_decay": 0.0,
    "per_channel": True,
    "quant_format": "QOperator",
    "calibration_samples": 32,
    # 7-bit weights: exact int8 arithmetic on any x86 CPU. With full-range weights, MLAS's AVX2
    # u8s8 kernels saturate int16 pair sums (CPUs without VNNI), which no fake-quant model mirrors.
    "reduce_range": True,
}


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """BatchNorm statistics far from identity, so folding moves real numbers into the weights."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def calibrated_model(per_channel: bool, reduce_range: bool = False) -> tuple[FakeQuantModel, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = build_model(SPEC)
    randomize_batchnorm(model, generator)
    fake_quant = FakeQuantModel(
        deployment_model(model.eval()), per_channel=per_channel, reduce_range=reduce_range
    )
    inputs = torch.randn(48, SPEC.in_channels, LENGTH, generator=generator)
    fake_quant.calibrate(inputs)
    return fake_quant.eval(), inputs


@pytest.fixture(scope="module")
def trained_fp32(tmp_path_factory):
    """A prepared tiny dataset and a briefly trained fp32 checkpoint of SPEC."""
    directory = tmp_path_factory.mktemp("qat")
    dataset = write_prepared_dataset(directory, n_samples=120, n_channels=SPEC.in_channels, length=LENGTH)
    torch.manual_seed(0)
    model = build_model(SPEC)
    config = TrainConfig(
        epochs=4, batch_size=16, lr=3e-3, weight_decay=0.0, lr_schedule="none", lr_step_epochs=1, seed=0
    )
    train(
        model,
        (torch.from_numpy(dataset.X_train), torch.from_numpy(dataset.y_train)),
        (torch.from_numpy(dataset.X_val), torch.from_numpy(dataset.y_val)),
        config,
        device=torch.device("cpu"),
        best_path=directory / "fp32.pt",
        resume_path=directory / "fp32-resume.pt",
        job_fingerprint="fp32",
        log=lambda _: None,
    )
    return directory, dataset


def qat_paths(directory, name: str) -> dict:
    out = directory / name
    return {
        "checkpoint_path": out / "model.pt",
        "onnx_path": out / "model.onnx",
        "history_path": out / "history.csv",
        "record_path": out / "qat.json",
        "resume_path": out / "resume" / "state.pt",
    }


@pytest.fixture(scope="module")
def qat_run(trained_fp32):
    directory, dataset = trained_fp32
    paths = qat_paths(directory, "qat")
    record = run_qat(
        model_path=directory / "fp32.pt",
        dataset_path=directory / "dataset.npz",
        epochs=2,
        **QAT_SETTINGS,
        **paths,
    )
    return record, paths, dataset


@pytest.fixture(scope="module")
def distilled_qat_run(trained_fp32):
    """The same QAT with the fp32 model as its float teacher (soft targets)."""
    directory, dataset = trained_fp32
    paths = qat_paths(directory, "qat_kd")
    distillation = {
        "name": "kd",
        "loss": "soft_targets",
        "temperature": 4.0,
        "alpha": 0.7,
        "teacher": "baseline",
    }
    record = run_qat(
        model_path=directory / "fp32.pt",
        dataset_path=directory / "dataset.npz",
        epochs=2,
        distillation=distillation,
        teacher_path=directory / "fp32.pt",
        **QAT_SETTINGS,
        **paths,
    )
    return record, paths, dataset


# --------------------------------------------------------------------------- straight-through estimator


def test_ste_passes_gradient_inside_the_clip_range_and_zero_outside():
    quantizer = ActivationFakeQuant()
    quantizer.min_val.fill_(-1.0)
    quantizer.max_val.fill_(1.55)
    quantizer.update_qparams()
    quantizer.eval()
    assert float(quantizer.scale) == pytest.approx(0.01) and int(quantizer.zero_point) == 100

    x = torch.tensor([-2.0, -0.999, -0.5, 0.004, 1.5, 1.55, 3.0], requires_grad=True)
    y = quantizer(x)
    (y * torch.arange(1.0, 8.0)).sum().backward()

    torch.testing.assert_close(y.detach(), torch.tensor([-1.0, -1.0, -0.5, 0.0, 1.5, 1.55, 1.55]))
    # The gradient of each output passes unchanged inside [-1, 1.55] and is zero outside.
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]))


def test_ranges_follow_an_ema_in_training_and_stay_fixed_when_frozen():
    quantizer = ActivationFakeQuant().train()
    quantizer(torch.tensor([0.0, 1.0]))
    assert float(quantizer.max_val) == pytest.approx(0.01)  # 0 + 0.01 * (1 - 0)
    quantizer.observing.fill_(False)
    quantizer(torch.tensor([0.0, 100.0]))
    assert float(quantizer.max_val) == pytest.approx(0.01)


# --------------------------------------------------------------------------- match with the deployed graph


def _initializers(path) -> dict[str, np.ndarray]:
    return {init.name: onnx.numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}


def _deployed_qparams(path, layer: str, quant_format: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Input, weight and output (scale, zero point) of ``layer``'s convolution in the int8 graph."""
    graph = onnx.load(str(path)).graph
    values = _initializers(path)
    weight = f"{layer}.weight_quantized"
    # A weight padded for ORT's int8 depthwise kernel reaches its node through a Pad of the stored one.
    stored = {weight, f"{weight}_padded"}
    if quant_format == "QOperator":
        (node,) = [n for n in graph.node if n.op_type == "QLinearConv" and n.input[3] in stored]
        names = {"input": node.input[1:3], "weight": node.input[4:6], "output": node.input[6:8]}
    else:
        producers = {output: node for node in graph.node for output in node.output}
        consumers = {name: node for node in graph.node for name in node.input}
        (weight_dq,) = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in stored]
        conv = consumers[weight_dq.output[0]]
        input_dq, output_q = producers[conv.input[0]], consumers[conv.output[0]]
        names = {"input": input_dq.input[1:3], "weight": weight_dq.input[1:3], "output": output_q.input[1:3]}
    return {role: (values[scale], values[zero_point]) for role, (scale, zero_point) in names.items()}


@pytest.fixture(params=["trained-QOperator-per-channel-7bit", "calibrated-QDQ-per-tensor-8bit"])
def converted(request, tmp_path):
    """A fake-quant model and its int8 ONNX file: from run_qat, or calibrated and converted here."""
    if request.param.startswith("trained"):
        _, paths, _ = request.getfixturevalue("qat_run")
        return load_qat(paths["checkpoint_path"]), paths["onnx_path"], "QOperator"
    model, inputs = calibrated_model(per_channel=False, reduce_range=False)
    convert_to_int8(
        model,
        tmp_path / "int8.onnx",
        inputs.numpy(),
        quant_format="QDQ",
        n_channels=SPEC.in_channels,
        length=LENGTH,
    )
    return model, tmp_path / "int8.onnx", "QDQ"


def test_scale_and_zero_point_equal_the_deployed_graph(converted):
    model, int8_path, quant_format = converted
    layer = model.fake_quant_layer("blocks.0.pointwise")
    quantizers = model.activation_quantizers
    keys = model.layers["blocks.0.pointwise"]
    weight_scale, weight_zero_point = layer.weight_qparams()

    deployed = _deployed_qparams(int8_path, "blocks.0.pointwise", quant_format)

    assert deployed["weight"][0].shape == ((16,) if model.per_channel else ())
    qmax = 64 if model.reduce_range else 127
    assert np.abs(_initializers(int8_path)["blocks.0.pointwise.weight_quantized"]).max() == qmax
    np.testing.assert_array_equal(deployed["weight"][0], weight_scale.numpy())
    np.testing.assert_array_equal(deployed["weight"][1], weight_zero_point.numpy())
    for role, key in (("input", keys.input), ("output", keys.output)):
        scale, zero_point = deployed[role]
        assert scale.dtype == np.float32 and zero_point.dtype == np.uint8
        assert float(scale) == float(quantizers[key].scale), role
        assert int(zero_point) == int(quantizers[key].zero_point), role
    assert int(deployed["output"][1]) == 0, "a fused ReLU output starts at 0"


def test_first_block_int8_outputs_equal_the_fake_quant_ones_exactly(qat_run):
    """Block 0's depthwise and pointwise uint8 outputs in ORT are bit-identical to the fake-quant ones."""
    _, paths, dataset = qat_run
    model = load_qat(paths["checkpoint_path"])
    graph_model = onnx.load(str(paths["onnx_path"]))
    layers = ("blocks.0.depthwise", "blocks.0.pointwise")
    outputs = []
    for layer in layers:
        weight = f"{layer}.weight_quantized"
        stored = {weight, f"{weight}_padded"}  # through the Pad of a padded weight
        (conv,) = [n for n in graph_model.graph.node if n.op_type == "QLinearConv" and n.input[3] in stored]
        outputs.append(conv.output[0])
        graph_model.graph.output.append(
            onnx.helper.make_tensor_value_info(outputs[-1], onnx.TensorProto.UINT8, None)
        )
    session = ort.InferenceSession(graph_model.SerializeToString(), providers=["CPUExecutionProvider"])
    deployed = session.run(outputs, {"input": dataset.X_test})

    captured = {}
    quantizers = [model.activation_quantizers[model.layers[layer].output] for layer in layers]
    for layer, quantizer in zip(layers, quantizers, strict=True):
        quantizer.register_forward_hook(
            lambda module, args, output, layer=layer: captured.update({layer: output})
        )
    with torch.no_grad():
        model(torch.from_numpy(dataset.X_test))

    for layer, quantizer, int8_output in zip(layers, quantizers, deployed, strict=True):
        fake_quant = torch.round(captured[layer] / quantizer.scale) + quantizer.zero_point
        # Channels added for ORT's int8 depthwise kernel hold the zero point, the code of 0.0.
        channels = fake_quant.shape[1]
        assert (int8_output[:, channels:] == int(quantizer.zero_point)).all(), layer
        int8_output = int8_output[:, :channels]
        assert len(np.unique(int8_output)) > 50, "too few distinct levels for the comparison to mean anything"
        # Both crop the input to the steps the final crop keeps (LENGTH 40 -> 35): the same tensors.
        assert int8_output.shape == fake_quant.shape == (len(dataset.X_test), channels, 16), layer
        np.testing.assert_array_equal(fake_quant.numpy(), int8_output.astype(np.float32), err_msg=layer)


# --------------------------------------------------------------------------- training and deployment


def test_training_moves_every_weight_through_the_ste():
    model, inputs = calibrated_model(per_channel=False)
    model.train()
    labels = torch.arange(len(inputs)) % SPEC.n_classes
    before = {name: model.fake_quant_layer(name).layer.weight.detach().clone() for name in model.layers}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    nn.functional.cross_entropy(model(inputs), labels).backward()
    for name in model.layers:
        grad = model.fake_quant_layer(name).layer.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    optimizer.step()

    for name, weight in before.items():
        assert not torch.equal(model.fake_quant_layer(name).layer.weight, weight), name


@pytest.mark.parametrize("run", ["qat_run", "distilled_qat_run"])
def test_deployed_int8_agrees_with_the_fake_quant_model(run, request):
    record, paths, dataset = request.getfixturevalue(run)
    assert record["best_epoch"] in (1, 2)
    counts = record["op_counts"]
    assert (
        counts.get("QLinearConv") == 4
        and counts.get("QGemm") == 1
        and counts.get("QLinearGlobalAveragePool") == 1
    )
    assert record["quantized_activation_tensors"] == 8
    assert json.loads(paths["record_path"].read_text()) == record
    assert not paths["resume_path"].exists()

    fake_quant = load_qat(paths["checkpoint_path"])
    with torch.no_grad():
        reference = fake_quant(torch.from_numpy(dataset.X_test)).numpy()
    deployed = OnnxClassifier(paths["onnx_path"])(dataset.X_test)
    step = float(fake_quant.activation_quantizers[fake_quant.layers["head"].output].scale)
    difference = np.abs(deployed - reference)

    assert np.mean(deployed.argmax(1) == reference.argmax(1)) >= 0.95
    # Tolerance, in steps of the logits' quantizer: a mean of half a step and a maximum of 2 steps
    # leave room for rounding ties (ORT's pooling rounds its own way), not for any wrong scale.
    assert difference.mean() <= 0.5 * step
    assert difference.max() <= 2 * step
    assert record["int8_vs_fake_quant_test"]["agreement_pct"] >= 95
    assert record["int8_vs_fake_quant_test"]["mean_abs_logit_error"] == pytest.approx(
        difference.mean(), rel=1e-5
    )
    assert record["val_accuracy_fake_quant"] == pytest.approx(
        np.mean(fake_quant(torch.from_numpy(dataset.X_val)).argmax(1).numpy() == dataset.y_val) * 100
    )


def test_a_teacher_changes_what_qat_learns_and_is_recorded(qat_run, distilled_qat_run):
    plain, distilled = qat_run[0], distilled_qat_run[0]
    assert "distillation" not in plain["settings"]
    assert distilled["settings"]["distillation"]["temperature"] == 4.0
    plain_state = load_qat(qat_run[1]["checkpoint_path"]).state_dict()
    distilled_state = load_qat(distilled_qat_run[1]["checkpoint_path"]).state_dict()
    assert any(not torch.equal(plain_state[key], distilled_state[key]) for key in plain_state)


def test_qat_checkpoint_differs_from_the_fp32_weights(qat_run, trained_fp32):
    _, paths, _ = qat_run
    directory, _ = trained_fp32
    fp32 = deployment_model(load_model(directory / "fp32.pt")[0])
    qat = load_qat(paths["checkpoint_path"])
    payload = torch.load(paths["checkpoint_path"], weights_only=True)
    assert ModelSpec.from_dict(payload["spec"]) == SPEC
    changed = [
        not torch.equal(qat.fake_quant_layer(name).layer.weight, fp32.get_submodule(name).weight)
        for name in qat.layers
    ]
    assert all(changed)


def test_interrupted_qat_resumes_to_the_uninterrupted_weights(trained_fp32, qat_run, monkeypatch):
    directory, _ = trained_fp32
    uninterrupted_record, uninterrupted, _ = qat_run
    paths = qat_paths(directory, "interrupted")
    settings = dict(model_path=directory / "fp32.pt", dataset_path=directory / "dataset.npz", epochs=2)

    class Killed(Exception):
        pass

    def crash_in_epoch_2(record):
        # Raised after epoch 2 trained but before its state is saved: the resume file holds epoch 1.
        if record.epoch == 2:
            raise Killed
        return "epoch line"

    with monkeypatch.context() as patch:
        patch.setattr(prunequant.engine, "format_epoch_line", crash_in_epoch_2)
        with pytest.raises(Killed):
            run_qat(**settings, **QAT_SETTINGS, **paths)
    assert paths["resume_path"].exists() and not paths["checkpoint_path"].exists()

    record = run_qat(**settings, **QAT_SETTINGS, **paths)

    assert record["resumed_from_epoch"] == 1 and uninterrupted_record["resumed_from_epoch"] == 0
    a = torch.load(paths["checkpoint_path"], weights_only=True)["state_dict"]
    b = torch.load(uninterrupted["checkpoint_path"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    history_a = np.genfromtxt(paths["history_path"], delimiter=",", names=True)
    history_b = np.genfromtxt(uninterrupted["history_path"], delimiter=",", names=True)
    np.testing.assert_array_equal(history_a["train_loss"], history_b["train_loss"])
    assert record["val_accuracy_int8"] == uninterrupted_record["val_accuracy_int8"]


def test_bad_settings_are_user_errors(trained_fp32, tmp_path):
    directory, _ = trained_fp32
    settings = dict(QAT_SETTINGS, quant_format="QInt4")
    with pytest.raises(UserError, match="quant_format"):
        run_qat(
            model_path=directory / "fp32.pt",
            dataset_path=directory / "dataset.npz",
            epochs=1,
            **settings,
            **qat_paths(tmp_path, "bad"),
        )


class _ResidualBlock(nn.Module):
    """The residual block's layout: conv path + skip, added before the ReLU, then pooled."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, 5, padding=2, groups=channels)
        self.pointwise = nn.Conv1d(channels, width, 1)
        self.skip = nn.Conv1d(channels, width, 1) if channels != width else nn.Identity()
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.pointwise(self.depthwise(x))
        return self.pool(self.relu(main + self.skip(x)[..., : main.shape[-1]]))


def test_residual_adds_are_quantized_like_ort_does():
    """Add inputs share the grids of their producers; the sum is quantized after the fused ReLU."""
    network = nn.Sequential(_ResidualBlock(4, 8), _ResidualBlock(8, 8))
    model = FakeQuantModel(network.eval(), per_channel=True)

    assert model.layers["0.skip"].input == model.layers["0.depthwise"].input  # the model input, once
    assert model.adds == {
        frozenset({"_0_pointwise", "_0_skip"}): "_0_relu",
        # The identity skip of block 1 is block 0's pooled output, requantized on block 0's grid.
        frozenset({"_1_pointwise", "_0_relu"}): "_1_relu",
    }
    assert model.layers["1.depthwise"].input == "_0_relu"
    model.calibrate(torch.randn(8, 4, 20, generator=torch.Generator().manual_seed(0)))
    assert model.qparams("_1_relu")[1] == 0, "the fused ReLU's range starts at 0"


RESIDUAL_SPEC = ModelSpec(
    in_channels=4, n_classes=3, blocks=(BlockSpec(5, 2, 8), BlockSpec(3, 1, 8)), arch="residual"
)


@pytest.mark.parametrize("quant_format", ["QOperator", "QDQ"])
def test_a_residual_model_converts_with_its_qat_ranges(tmp_path, quant_format):
    """Block 0's zero padding keeps the input's grid, so its conv and its skip read one quantized
    input, as in the int8 graph, where the exporter folded the padding into the conv."""
    generator = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    model = build_model(RESIDUAL_SPEC)
    randomize_batchnorm(model, generator)
    fake_quant = FakeQuantModel(deployment_model(model.eval()), per_channel=True, reduce_range=True)
    assert fake_quant.layers["blocks.0.depthwise"].input == fake_quant.layers["blocks.0.skip"].input == "x"
    length = 42  # conv 21, pool 10, conv 10: no crop
    inputs = torch.randn(64, RESIDUAL_SPEC.in_channels, length, generator=generator)
    fake_quant.calibrate(inputs)
    fake_quant.eval()
    record = convert_to_int8(
        fake_quant,
        tmp_path / "int8.onnx",
        inputs.numpy(),
        quant_format=quant_format,
        n_channels=RESIDUAL_SPEC.in_channels,
        length=length,
    )
    assert record["quantized_activation_tensors"] >= 8
    with torch.no_grad():
        reference = fake_quant(inputs).numpy()
    deployed = OnnxClassifier(tmp_path / "int8.onnx")(inputs.numpy())
    step = float(fake_quant.activation_quantizers[fake_quant.layers["head"].output].scale)
    assert np.abs(deployed - reference).mean() <= 0.5 * step
    assert np.mean(deployed.argmax(1) == reference.argmax(1)) >= 0.95


def test_qat_int8_graph_is_its_fp32_export_quantized(converted, tmp_path):
    model, int8_path, _ = converted
    fp32_path = export_onnx(
        model.float_model(), tmp_path / "fp32.onnx", n_channels=SPEC.in_channels, length=LENGTH
    )
    assert "Slice" in fp32_op_sequence(fp32_path)  # LENGTH 40 ends in 7 steps: the input is cropped
    assert int8_op_sequence(int8_path) == fp32_op_sequence(fp32_path)
