"""The tflm deployment in the study: its names and files, the recipes it reproduces, the device section."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunequant.deploy.convert import conversion_form
from prunequant.deploy.recipes import qat_activation_qparams, recipe_request
from prunequant.errors import UserError
from prunequant.layout import LATENCY_RUNTIMES, StudyLayout
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize.fake_quant import FakeQuantModel
from prunequant.quantize.fold import deployment_model, fold_batchnorm
from prunequant.report.device import device_section, render_device_section, split_unavailable
from prunequant.variants import deployments, parse_deployment, tflm_recipes

RECIPES = [
    {"name": "minmax", "method": "ptq"},
    {"name": "partial", "method": "partial"},
    {"name": "qat", "method": "qat"},
]


def test_every_full_int8_recipe_but_not_partial_is_deployed_in_tflm():
    assert tflm_recipes(RECIPES) == ["minmax", "qat"]
    assert tflm_recipes(RECIPES, enabled=False) == []
    names = deployments("baseline", ["baseline"], ["minmax", "partial", "qat"], ["minmax", "qat"])
    assert names[-2:] == ["int8-minmax_tflm", "int8-qat_tflm"]
    assert parse_deployment("int8-qat_tflm") == {"precision": "int8", "runtime": "tflm", "recipe": "qat"}


def test_tflm_variants_have_their_own_folder_and_are_never_timed():
    layout = StudyLayout(
        runs=["seed0"],
        models=["baseline"],
        quantized=["baseline"],
        recipes={"minmax": {"method": "ptq"}, "qat": {"method": "qat"}},
        tuning=[],
        sensitivity=False,
        tflm=["minmax", "qat"],
    )
    assert layout.deployed_artifact("seed0", "baseline", "int8-qat_tflm") == (
        "results/tflm/seed0/baseline/qat/model.tflite"
    )
    assert "results/tflm/seed0/baseline/minmax/evaluation.json" in layout.evaluation_files("evaluation.json")
    assert "tflm" not in LATENCY_RUNTIMES
    timed = [name for runtime in LATENCY_RUNTIMES for name in layout.timed_artifacts(runtime)]
    assert timed and not [name for name in timed if name.endswith("_tflm")]
    assert layout.tflm_inputs("seed0", "baseline") == {
        "onnxruntime_minmax": "results/quantize/seed0/baseline/minmax/predictions.csv",
        "onnxruntime_qat": "results/qat/seed0/baseline/qat/predictions.csv",
        "qat_qat": "results/qat/seed0/baseline/qat/checkpoint.pt",
    }


def test_partial_quantization_is_refused_with_the_reason():
    model = build_model(ModelSpec(4, 3, (BlockSpec(5, 2, 8),)))
    recipe = {"method": "partial", "calibration_samples": 4, "per_channel": True}
    with pytest.raises(UserError, match="float, which TFLM's int8 kernels cannot run"):
        recipe_request(recipe, parent=model, train_inputs=torch.zeros(8, 4, 20).numpy(), seed=0)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (ModelSpec(4, 3, (BlockSpec(5, 2, 8),)), {"input", "conv2d", "relu", "mean", "linear"}),
        (
            ModelSpec(4, 3, (BlockSpec(5, 2, 8), BlockSpec(3, 1, 8)), arch="residual"),
            {
                "input",
                "conv2d",
                "conv2d_1",
                "conv2d_2",
                "relu",
                "conv2d_3",
                "conv2d_4",
                "relu_1",
                "mean",
                "linear",
            },
        ),
    ],
)
def test_qat_ranges_land_on_the_tensors_the_converter_quantizes(spec, expected):
    """Every ORT-quantized tensor of the QAT model gets a conversion-form name, zero point shifted to int8."""
    model = build_model(spec).eval()
    fake_quant = FakeQuantModel(deployment_model(model), per_channel=True)
    fake_quant.calibrate(torch.randn(16, 4, 40))
    qparams = qat_activation_qparams(
        fake_quant, conversion_form(fold_batchnorm(model)), torch.zeros(1, 4, 40)
    )
    assert set(qparams) == expected
    scale, zero_point = fake_quant.qparams("x")
    assert qparams["input"] == (scale, zero_point - 128)
    assert all(-128 <= zero_point <= 127 for _, zero_point in qparams.values())


def _runs(arena: int, flash: int) -> pd.DataFrame:
    row = {
        "variant": "baseline/int8-minmax_tflm",
        "run": "seed0",
        "runtime": "tflm",
        "arena_bytes": arena,
        "arena_head_bytes": arena - 100,
        "arena_tail_bytes": 100,
        "arena_bytes_by_bisection": arena,
        "flash_bytes": flash,
        "macs": 1000,
        "peak_activation_bytes": arena - 200,
        "activation_estimate_minus_arena_head_bytes": -100,
        "host_ms_median": 0.1,
        "onnxruntime_int8_agreement_pct": 100.0,
        "onnxruntime_int8_mean_abs_logit_error": 0.0,
        "agreement_pct": 99.0,
    }
    return pd.DataFrame([row])


SUMMARY = pd.DataFrame(
    [
        {
            "variant": "baseline/int8-minmax_tflm",
            "val_accuracy": 90.0,
            "accuracy": 89.0,
            "accuracy_low": 88.0,
            "accuracy_high": 90.0,
        }
    ]
)


def _section(runs: pd.DataFrame, devices) -> dict:
    return device_section(
        runs,
        SUMMARY,
        devices=devices,
        reserved_ram_bytes=1000,
        first_recipe="minmax",
        unavailable=runs.iloc[0:0],
    )


def test_a_fitting_variant_is_recommended_per_device():
    section = _section(_runs(arena=9000, flash=12000), ["cortex-m0plus"])
    assert section["table"]["fits_cortex-m0plus"].tolist() == ["fits"]
    assert section["choices"][0]["recommended"]["variant"] == "baseline/int8-minmax_tflm"
    assert "ship `baseline/int8-minmax_tflm`" in render_device_section(section)


def test_a_budget_nothing_meets_says_so_plainly_with_the_closest():
    section = _section(_runs(arena=40_000, flash=12000), ["cortex-m0plus", {"flash_bytes": "50%"}])
    assert section["table"]["fits_cortex-m0plus"].tolist() == ["does not fit (RAM)"]
    text = render_device_section(section)
    assert "no variant fits cortex-m0plus" in text and "the closest is baseline/int8-minmax_tflm" in text
    assert "no variant fits custom (flash_bytes 6000)" in text


def test_a_variant_that_could_not_be_deployed_is_named_with_its_reason():
    runs = pd.concat(
        [
            _runs(9000, 12000),
            pd.DataFrame(
                [{"variant": "x/int8-minmax_tflm", "run": "seed0", "unavailable": "cannot convert: Erfinv"}]
            ),
        ]
    )
    deployed, unavailable = split_unavailable(runs)
    assert len(deployed) == 1 and "unavailable" not in deployed.columns
    section = device_section(
        deployed,
        SUMMARY,
        devices=["cortex-m4"],
        reserved_ram_bytes=0,
        first_recipe="minmax",
        unavailable=unavailable,
    )
    assert (
        "Not deployed in TFLM: `x/int8-minmax_tflm` (seed0): cannot convert: Erfinv"
        in render_device_section(section)
    )


def test_a_model_the_converter_cannot_take_leaves_a_one_line_reason_and_the_job_succeeds(
    tmp_path, monkeypatch
):
    """The tflm job of a model litert-torch cannot lower writes why, and every other file the rule
    declares, so the rest of the study and the report go on without that variant."""
    from conftest import write_prepared_dataset

    import prunequant.deploy.convert as convert
    from prunequant.checkpoint import save_model
    from prunequant.deploy.stage import UNAVAILABLE, TflmRecipeFiles, deploy_in_tflm
    from prunequant.errors import UserError
    from prunequant.model import BlockSpec, ModelSpec, build_model

    write_prepared_dataset(tmp_path, n_samples=60, n_channels=4, length=30)
    save_model(build_model(ModelSpec(4, 3, (BlockSpec(5, 2, 8),))).eval(), tmp_path / "model.pt")
    reason = (
        "cannot convert to TFLite: module 'act' (Erfinv) uses aten.erfinv.default, "
        "which litert-torch cannot lower"
    )
    monkeypatch.setattr(
        convert, "convert_models", lambda requests: {name: UserError(reason) for name in requests}
    )
    folder = tmp_path / "tflm" / "minmax"
    files = TflmRecipeFiles(
        settings={
            "method": "ptq",
            "calibration_method": "MinMax",
            "calibration_samples": 8,
            "per_channel": True,
        },
        variant={"run": "seed0", "seed": 0, "model": "baseline", "deployment": "int8-minmax_tflm"},
        onnxruntime_predictions=str(tmp_path / "unused.csv"),
        tflite=str(folder / "model.tflite"),
        record=str(folder / "tflm.json"),
        evaluation=str(folder / "evaluation.json"),
        predictions=str(folder / "predictions.csv"),
    )
    evaluations = deploy_in_tflm(
        {"minmax": files},
        parent_model_path=tmp_path / "model.pt",
        parent_predictions_path=tmp_path / "unused.csv",
        dataset_path=tmp_path / "dataset.npz",
        seed=0,
        batch_size=8,
    )
    assert evaluations == {"minmax": {UNAVAILABLE: reason}}
    for path in (files.tflite, files.record, files.evaluation, files.predictions):
        assert Path(path).exists(), path
    assert json.loads(Path(files.evaluation).read_text())[UNAVAILABLE] == reason
    assert "\n" not in reason and Path(files.tflite).read_bytes() == b""
