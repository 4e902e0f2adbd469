"""TFLite conversion (litert-torch, its own environment) and measurement in TensorFlow Lite Micro.

Conversions run in the converter environment through :func:`convert_model`; without it those
tests are skipped with the command that builds it. Everything else runs in the main environment.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import prunequant
from prunequant.checkpoint import save_model
from prunequant.deploy import bridge, memory, tflm
from prunequant.deploy import convert as convert_module
from prunequant.deploy.convert import CONVERTER_ENV_COMMAND, conversion_form, convert_model, converter_python
from prunequant.errors import UserError
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.prune.structured import prune_structured
from prunequant.quantize import OnnxClassifier, deployment_model, export_onnx, quantize_ptq

# The default study's shapes: JapaneseVowels' 12 channels resampled to 100 steps, 9 classes, and
# config.yaml's block (kernel 25, stride 2, 140 channels); a residual model of two blocks.
CHANNELS, LENGTH, CLASSES = 12, 100, 9
SPECS = {
    "separable": ModelSpec(CHANNELS, CLASSES, (BlockSpec(25, 2, 140),)),
    "residual": ModelSpec(CHANNELS, CLASSES, (BlockSpec(25, 2, 64), BlockSpec(5, 1, 64)), arch="residual"),
}
VARIANTS = ("separable", "residual", "pruned")

needs_converter = pytest.mark.skipif(
    converter_python() is None,
    reason=f"the TFLite converter environment is missing; build it with `{CONVERTER_ENV_COMMAND}`",
)

ALLOCATIONS_TEXT = """\
[RecordingMicroAllocator] Arena allocation total 9296 bytes
[RecordingMicroAllocator] Arena allocation head 6064 bytes
[RecordingMicroAllocator] Arena allocation tail 3232 bytes
[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 384 bytes with alignment overhead (requested 384 bytes for 16 allocations)
[RecordingMicroAllocator] 'Persistent buffer data' used 1632 bytes with alignment overhead (requested 1588 bytes for 12 allocations)
"""  # noqa: E501 (TFLM's own lines)


def synthetic_set(n_samples: int, rng: np.random.Generator, prototypes: np.ndarray):
    """Samples of one class share a prototype series; noise of the same size hides it per sample."""
    labels = rng.integers(0, CLASSES, n_samples)
    noise = rng.standard_normal((n_samples, CHANNELS, LENGTH))
    return (prototypes[labels] + noise).astype(np.float32), labels


def trained(spec: ModelSpec, inputs: np.ndarray, labels: np.ndarray) -> nn.Module:
    """A model trained far enough that its logits have the margins of a real one."""
    torch.manual_seed(0)
    model = build_model(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
    for step in range(120):
        batch = slice((step * 64) % len(x), (step * 64) % len(x) + 64)
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three trained variants, their calibration and held-out samples (float, [N, C, T])."""
    rng = np.random.default_rng(0)
    prototypes = rng.standard_normal((CLASSES, CHANNELS, LENGTH)).astype(np.float32)
    train_x, train_y = synthetic_set(512, rng, prototypes)
    held_out, held_out_y = synthetic_set(300, rng, prototypes)
    models = {arch: trained(spec, train_x, train_y) for arch, spec in SPECS.items()}
    models["pruned"] = prune_structured(models["separable"], rate=0.5, criterion="l1")[0]
    return {
        "models": models,
        "calibration": train_x[:128],
        "held_out": held_out,
        "held_out_labels": held_out_y,
        "dir": tmp_path_factory.mktemp("tflm"),
    }


@pytest.fixture(scope="module")
def tflite_files(study):
    """The MinMax per-channel .tflite of every variant, converted in the converter environment."""
    if converter_python() is None:
        pytest.skip(f"the TFLite converter environment is missing; build it with `{CONVERTER_ENV_COMMAND}`")
    return {
        name: convert_model(model, study["calibration"], per_channel=True)
        for name, model in study["models"].items()
    }


def ort_int8_logits(study, name: str) -> np.ndarray:
    """Logits of the project's ONNX Runtime int8 recipe: MinMax, per-channel, the same calibration."""
    folder = study["dir"] / name
    export_onnx(
        deployment_model(study["models"][name]), folder / "fp32.onnx", n_channels=CHANNELS, length=LENGTH
    )
    quantize_ptq(
        fp32_path=folder / "fp32.onnx",
        int8_path=folder / "int8.onnx",
        record_path=folder / "record.json",
        train_inputs=study["calibration"],
        seed=0,
        calibration_samples=None,
        calibration_method="MinMax",
        quant_format="QOperator",
        per_channel=True,
    )
    return OnnxClassifier(folder / "int8.onnx")(study["held_out"])


# --------------------------------------------------------------------------- without the converter


@pytest.mark.parametrize("length", [40, 41])  # the last block's output even, or cropped by one step
@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(4, 3, (BlockSpec(5, 2, 8), BlockSpec(3, 1, 6))),
        ModelSpec(4, 3, (BlockSpec(5, 2, 8), BlockSpec(3, 1, 8)), arch="residual"),  # identity skip
        ModelSpec(3, 2, (BlockSpec(4, 3, 8), BlockSpec(2, 1, 6)), arch="residual"),  # even kernels
    ],
)
def test_conversion_form_computes_the_deployment_models_function(spec, length):
    torch.manual_seed(1)
    model = build_model(spec).eval()
    for block in model.blocks:  # BatchNorm far from identity, so folding it matters
        block.norm.running_mean.uniform_(-1, 1)
        block.norm.running_var.uniform_(0.5, 2)
    inputs = torch.randn(8, spec.in_channels, length)
    with torch.no_grad():
        torch.testing.assert_close(conversion_form(model)(inputs), deployment_model(model)(inputs))


def test_conversion_form_refuses_other_modules():
    with pytest.raises(UserError, match="Sequential"):
        conversion_form(nn.Sequential(nn.Conv1d(2, 2, 3)))


def test_arena_parser_reads_total_head_and_tail():
    usage = tflm.parse_arena_usage(ALLOCATIONS_TEXT)
    assert usage == tflm.ArenaUsage(total=9296, head=6064, tail=3232)
    assert usage.head + usage.tail == usage.total


def test_arena_parser_names_a_missing_line():
    with pytest.raises(ValueError, match="tail"):
        tflm.parse_arena_usage(ALLOCATIONS_TEXT.replace("allocation tail", "allocation tial"))


# --------------------------------------------------------------------------- converted files


@needs_converter
@pytest.mark.parametrize("name", VARIANTS)
def test_conversion_is_full_int8_with_tflm_kernels_only(tflite_files, name):
    data = tflite_files[name]
    operators = tflm.check_tflm_int8(data, name)
    assert set(operators) <= tflm.TFLM_INT8_OPS
    assert "DEPTHWISE_CONV_2D" in operators and operators[-1] == "FULLY_CONNECTED"
    io = tflm.tflite_io(data)
    assert io["input"]["type"] == io["output"]["type"] == "INT8"
    assert io["input"]["shape"] == [1, CHANNELS, LENGTH] and io["output"]["shape"] == [1, CLASSES]


@needs_converter
@pytest.mark.parametrize("name", VARIANTS)
def test_tflm_predictions_agree_with_onnx_runtime_int8(study, tflite_files, name):
    tflm_logits = tflm.run_tflm(tflite_files[name], study["held_out"])
    ort_logits = ort_int8_logits(study, name)
    agreement = np.mean(tflm_logits.argmax(axis=1) == ort_logits.argmax(axis=1))
    assert agreement >= 0.99
    assert np.mean(tflm_logits.argmax(axis=1) == study["held_out_labels"]) > 0.9  # a real classifier


@needs_converter
def test_pruned_model_needs_less_flash_and_arena(tflite_files):
    full, pruned = tflite_files["separable"], tflite_files["pruned"]
    assert len(pruned) < len(full)
    assert tflm.arena_usage(pruned).head < tflm.arena_usage(full).head


@needs_converter
@pytest.mark.parametrize("name", VARIANTS)
def test_arena_report_agrees_with_bisection(tflite_files, name):
    data = tflite_files[name]
    usage = tflm.arena_usage(data)
    smallest = tflm.smallest_arena(data, upper=4 * usage.total)
    assert abs(smallest - usage.total) <= 32  # the arena's start is aligned to 16 bytes
    assert usage.head > 0 and usage.tail > 0 and usage.head + usage.tail == usage.total


@needs_converter
def test_measurement_of_a_file(study, tflite_files, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_files["separable"])
    record = tflm.measure_tflite(path.read_bytes(), study["held_out"][0], repeats=20)
    assert record["flash_bytes"] == path.stat().st_size
    assert abs(record["arena_bytes_by_bisection"] - record["arena_bytes"]) <= 32
    assert 0 < record["host_ms_q1"] <= record["host_ms_median"] <= record["host_ms_q3"]


@needs_converter
@pytest.mark.parametrize("name", VARIANTS)
def test_activation_estimate_is_close_below_the_arena_head(study, tflite_files, name):
    """The graph estimate leaves out kernels' scratch buffers and the converter's layout copies."""
    estimate = memory.model_peak_activation_bytes(
        conversion_form(study["models"][name]), torch.zeros(1, CHANNELS, LENGTH), element_size=1
    )
    head = tflm.arena_usage(tflite_files[name]).head
    assert estimate.bytes <= head <= 2 * estimate.bytes


def edited(data: bytes, edit) -> bytes:
    """``data`` with ``edit`` applied to its object form (tflite-micro's schema), serialized again."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    edit(schema, model)
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@needs_converter
def test_check_rejects_float_input(tflite_files):
    def float_input(schema, model):
        graph = model.subgraphs[0]
        graph.tensors[graph.inputs[0]].type = schema.TensorType.FLOAT32

    with pytest.raises(UserError, match="input is FLOAT32"):
        tflm.check_tflm_int8(edited(tflite_files["separable"], float_input))


@needs_converter
def test_check_names_an_op_without_a_tflm_int8_kernel(tflite_files):
    def cumsum_op(schema, model):
        model.operatorCodes[0].builtinCode = schema.BuiltinOperator.CUMSUM
        model.operatorCodes[0].deprecatedBuiltinCode = min(schema.BuiltinOperator.CUMSUM, 127)

    with pytest.raises(UserError, match="CUMSUM"):
        tflm.check_tflm_int8(edited(tflite_files["separable"], cumsum_op))


class Erfinv(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(x.clamp(-0.5, 0.5))


class UnconvertibleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(CHANNELS, 8, 3)
        self.act = Erfinv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)).mean(dim=-1)


@needs_converter
def test_unconvertible_model_gives_one_line_naming_module_and_op(study):
    with pytest.raises(UserError) as raised:
        convert_model(
            UnconvertibleModel().eval(), study["calibration"][:4], per_channel=True, deployment_form=False
        )
    message = str(raised.value)
    assert "\n" not in message
    assert "'act' (Erfinv)" in message and "erfinv" in message


def output_qparams(data: bytes, op_name: str) -> tuple[float, int]:
    """Scale and zero point of the first ``op_name`` op's output tensor in a .tflite."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(data, 0).Subgraphs(0)
    index = tflm.tflite_operators(data).index(op_name)
    quantization = graph.Tensors(graph.Operators(index).Outputs(0)).Quantization()
    return float(quantization.Scale(0)), int(quantization.ZeroPoint(0))


@needs_converter
def test_fixed_activation_parameters_are_the_files(study, tflite_files):
    """The QAT path: tensors' scales and zero points given, not calibrated.

    The mean's output is shared with the flatten after it: both must take the given parameters,
    or the converter would requantize between them (a QUANTIZE op).
    """
    data = convert_model(
        study["models"]["separable"],
        study["calibration"],
        per_channel=True,
        observer="percentile",
        percentile=99.0,
        activation_qparams={"input": (0.05, -3), "mean": (0.01, -100)},
    )
    io = tflm.tflite_io(data)
    assert io["input"]["scale"] == pytest.approx(0.05) and io["input"]["zero_point"] == -3
    assert output_qparams(data, "MEAN") == (pytest.approx(0.01), -100)
    assert "QUANTIZE" not in tflm.check_tflm_int8(data)
    # The percentile range keeps the middle 99% of the logits: a narrower grid than MinMax's.
    assert io["output"]["scale"] < tflm.tflite_io(tflite_files["separable"])["output"]["scale"]


@needs_converter
def test_command_line_from_a_checkpoint_writes_the_same_file(study, tflite_files, tmp_path):
    """What a workflow rule runs: the converter's command line on a saved checkpoint."""
    save_model(study["models"]["separable"], tmp_path / "model.pt")
    np.save(tmp_path / "calibration.npy", study["calibration"])
    source_root = Path(prunequant.__file__).resolve().parents[1]
    subprocess.run(
        [
            converter_python(),
            "-m",
            "prunequant.deploy.convert",
            "--checkpoint",
            str(tmp_path / "model.pt"),
            "--calibration",
            str(tmp_path / "calibration.npy"),
            "--output",
            str(tmp_path / "model.tflite"),
            "--per-channel",
            "--record",
            str(tmp_path / "record.json"),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(source_root)},
    )
    assert (tmp_path / "model.tflite").read_bytes() == tflite_files["separable"]
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["litert_torch_version"] == "0.10.0" and record["flash_bytes"] == len(
        tflite_files["separable"]
    )


def test_missing_converter_environment_says_how_to_build_it(study, monkeypatch):
    monkeypatch.setattr(bridge, "converter_python", lambda: None)
    with pytest.raises(UserError, match=re.escape(CONVERTER_ENV_COMMAND)):
        convert_module.convert_model(study["models"]["separable"], study["calibration"], per_channel=True)
