"""Names of models, runs and deployments parse back to the settings they were made from."""

from dataclasses import asdict

import pytest
import yaml
from workflow_support import ROOT

from prunequant.variants import (
    METHOD_FIELDS,
    configured_models,
    configured_runs,
    deployments,
    distilled_recipe_twins,
    method_settings,
    parse_deployment,
    parse_model,
    parse_run,
    parse_split,
    quantized_models,
    split_name,
    structured_name,
)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("baseline", {"family": "baseline"}),
        (
            "l1-layer-oneshot-r0.05",
            {"family": "structured", "criterion": "l1", "scope": "layer", "rate": 0.05},
        ),
        (
            "taylor-global-iter3cubic-r0.5",
            {
                "family": "structured",
                "schedule": "iterative",
                "steps": 3,
                "spacing": "cubic",
                "scope": "global",
            },
        ),
        ("bn_scale-layer-oneshot-r0.5", {"criterion": "bn_scale"}),
        ("sens-l1-d1", {"family": "sensitivity", "criterion": "l1", "max_drop_pp": 1.0}),
        ("sparse-global-s0.9", {"family": "unstructured", "scope": "global", "rate": 0.9}),
        ("scratch-r0.15", {"family": "scratch", "rate": 0.15}),
    ],
)
def test_model_names_parse_to_their_settings(name, expected):
    variant = parse_model(name)
    assert {key: getattr(variant, key) for key in expected} == expected


@pytest.mark.parametrize(
    "name", ["", "rate0.1", "l3-layer-oneshot-r0.5", "l1-layer-oneshot-r1.5", "scratch-0.5"]
)
def test_unknown_names_are_refused(name):
    with pytest.raises(ValueError, match="names no model"):
        parse_model(name)


def test_structured_names_round_trip():
    name = structured_name("random", "layer", "iterative", 0.3, steps=4, spacing="linear")
    assert name == "random-layer-iter4linear-r0.3"
    variant = parse_model(name)
    assert (variant.criterion, variant.steps, variant.spacing, variant.rate) == ("random", 4, "linear", 0.3)


def test_the_shipped_config_asks_for_every_method_family():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    models = configured_models(config["prune"])
    families = {parse_model(name).family for name in models}
    assert families == {"baseline", "structured", "sensitivity", "unstructured", "scratch"}
    assert {"l1-layer-oneshot-r0.05", "l1-layer-oneshot-r0.1", "l1-layer-oneshot-r0.15"} <= set(models)
    assert {parse_model(name).criterion for name in models} >= {"l1", "bn_scale", "taylor", "random"}
    assert len(models) == len(set(models))
    assert quantized_models(config["quantize"], models) == ["baseline", "l1-layer-oneshot-r0.5"]
    assert len(config["seeds"]) >= 3


def test_runs_and_splits():
    assert configured_runs([0, 1], None) == ["seed0", "seed1"]
    assert configured_runs([3], 2) == ["fold0-seed3", "fold1-seed3"]
    assert parse_run("fold1-seed3") == (1, 3) and parse_run("seed7") == (None, 7)
    assert split_name("seed7") == "fixed" and split_name("fold1-seed3") == "fold1"
    assert split_name("seed7", per_run=True) == "seed7"
    assert split_name("fold1-seed3", per_run=True) == "fold1-seed3"
    assert parse_split("fixed") == (None, None) and parse_split("fold2") == (2, None)
    assert parse_split("seed3") == (None, 3) and parse_split("fold2-seed3") == (2, 3)
    with pytest.raises(ValueError):
        parse_run("seedX")


def test_deployments():
    assert deployments("m", quantized=[], recipes=["a"]) == ["fp32_torch"]
    assert deployments("m", quantized=["m"], recipes=["a", "b"]) == [
        "fp32_torch",
        "fp32_onnxruntime",
        "int8-a_onnxruntime",
        "int8-b_onnxruntime",
    ]
    assert parse_deployment("int8-qat_onnxruntime") == {
        "precision": "int8",
        "runtime": "onnxruntime",
        "recipe": "qat",
    }
    assert parse_deployment("fp32_torch")["runtime"] == "torch"
    with pytest.raises(ValueError):
        parse_deployment("int4_torch")


def test_distilled_twins_are_named_after_their_distillation_and_parse_back():
    prune = {
        "structured": [
            {"criterion": "l1", "scope": "layer", "schedule": "oneshot", "rates": [0.5], "distill": ["kd"]}
        ],
        "unstructured": {"scopes": ["layer"], "sparsities": [0.9], "distill": ["kd", "soft_t8"]},
        "from_scratch": {"rates": [0.5], "distill": ["kd"]},
    }
    assert configured_models(prune) == [
        "baseline",
        "l1-layer-oneshot-r0.5",
        "l1-layer-oneshot-r0.5-kd",
        "sparse-layer-s0.9",
        "sparse-layer-s0.9-kd",
        "sparse-layer-s0.9-soft_t8",
        "scratch-r0.5",
        "scratch-r0.5-kd",
    ]
    student = parse_model("sparse-layer-s0.9-soft_t8")
    assert (student.family, student.rate, student.distill) == ("unstructured", 0.9, "soft_t8")
    assert student.undistilled == "sparse-layer-s0.9" and student.method == "magnitude/layer + soft_t8"
    assert parse_model("l1-layer-oneshot-r0.5").distill == ""
    assert parse_model("scratch-r0.5-kd").undistilled == "scratch-r0.5"


def test_a_distilled_qat_recipe_is_paired_with_its_plain_twin():
    plain = {"name": "qat", "method": "qat", "epochs": 5, "lr": 1e-4}
    recipes = [
        plain,
        dict(plain, name="qat_kd", distill="kd"),
        dict(plain, name="qat_long_kd", epochs=9, distill="kd"),
    ]
    assert distilled_recipe_twins(recipes) == {"qat_kd": "qat"}


def test_method_settings_keep_the_method_fields_and_nothing_else():
    model = parse_model("taylor-global-iter3cubic-r0.5")
    variant = {"run": "seed1", "seed": 1, "model": model.name, "deployment": "fp32_torch", **asdict(model)}
    settings = method_settings(variant)
    assert tuple(settings) == METHOD_FIELDS
    # distillation is how a model was trained, not how it was compressed: the stages get it apart
    assert settings == {key: value for key, value in asdict(model).items() if key not in ("name", "distill")}
    assert settings["schedule"] == "iterative" and settings["steps"] == 3 and settings["rate"] == 0.5


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.5, 0.999, 0.1234567, 0.12345671, 0.001])
def test_a_rate_survives_its_name_exactly(rate):
    name = structured_name("l1", "layer", "oneshot", rate)
    assert parse_model(name).rate == rate
    # two rates that agree to six digits still get two names
    assert structured_name("l1", "layer", "oneshot", 0.1234567) != structured_name(
        "l1", "layer", "oneshot", 0.12345671
    )
