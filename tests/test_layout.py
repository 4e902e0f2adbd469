"""Every file of a study has one place, named by its stage first; stages and the report read them there."""

import copy
import re

import pytest
import yaml
from workflow_support import ROOT

from prunequant.layout import FAMILY_STAGE, FIGURES, StudyLayout, stable_setting
from prunequant.variants import parse_deployment, parse_model, split_variant

STAGES = {"train_baseline", "prune", "sparsify", "from_scratch", "export_onnx", "quantize", "qat", "tflm"}
# results/<stage>/<run>/...: the constant prefix of every path names the stage that makes it.
STAGE_FIRST = re.compile(r"^results/(?P<stage>[a-z_]+)/(?P<run>(fold\d+-)?seed\d+)(/|$)")


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture(scope="module")
def study(config):
    return StudyLayout.from_config(config, n_folds=None)


def _grid_config(config, *, sensitivity=True):
    grid = copy.deepcopy(config)
    grid["seeds"] = [0, 1]
    grid["tune"] = {"batch_sizes": [16, 32], "lrs": [0.001]}
    if not sensitivity:
        grid["prune"]["sensitivity"]["max_drop_pp"] = []
        grid["prune"]["sensitivity"]["rates"] = []
    return grid


def test_every_evaluated_variant_has_its_own_files_under_its_stage(study):
    variants = study.evaluated_variants()
    for name in ("evaluation.json", "predictions.csv"):
        paths = study.evaluation_files(name)
        assert len(paths) == len(set(paths)) == len(variants)
        for path, (run, model, deployment) in zip(paths, variants, strict=True):
            match = STAGE_FIRST.match(path)
            assert match and match["run"] == run and match["stage"] in STAGES, path
            assert path.endswith(f"/{name}")
            if deployment == "fp32_torch":
                assert match["stage"] == FAMILY_STAGE[parse_model(model).family]
            elif deployment == "fp32_onnxruntime":
                assert path == f"results/export_onnx/{run}/{model}/{name}"


def test_int8_files_live_with_the_stage_that_makes_them(study):
    for name, settings in study.recipes.items():
        stage = "qat" if settings["method"] == "qat" else "quantize"
        folder = f"results/{stage}/seed1/baseline/{name}"
        assert study.int8_artifact("seed1", "baseline", name) == f"{folder}/model.onnx"
        assert study.int8_record("seed1", "baseline", name) == f"{folder}/{stage}.json"
        assert study.stage_dir("seed1", "baseline", f"int8-{name}_onnxruntime") == folder
    assert {"quantize", "qat"} == {study.int8_stage(name) for name in study.recipes}
    assert "name" not in study.recipe("minmax") and study.recipe("minmax")["method"] == "ptq"


def test_the_baseline_has_one_folder_per_run_and_a_pruned_model_one_per_model(study):
    assert study.trained_model("seed0", "baseline") == "results/train_baseline/seed0/model.pt"
    assert study.stage_dir("seed0", "baseline", "fp32_torch") == "results/train_baseline/seed0"
    pruned = next(model for model in study.models if parse_model(model).family == "structured")
    assert study.training_history("seed2", pruned) == f"results/prune/seed2/{pruned}/history.csv"
    assert study.dataset_path("seed2") == "results/data/fixed/dataset.npz"
    assert study.dataset_path("fold3-seed0") == "results/data/fold3/dataset.npz"


def test_with_a_split_per_run_every_run_has_its_own_dataset(config):
    per_run = copy.deepcopy(config)
    per_run["data"]["split_per_run"] = True
    study = StudyLayout.from_config(per_run, n_folds=None)
    assert study.dataset_path("seed2") == "results/data/seed2/dataset.npz"
    assert study.splits == sorted(study.runs)
    grouped = StudyLayout.from_config(per_run, n_folds=2)
    assert grouped.dataset_path("fold1-seed0") == "results/data/fold1-seed0/dataset.npz"


def test_latency_times_the_first_run_and_measures_each_variant_against_a_timed_reference(study):
    for runtime in ("torch", "onnxruntime"):
        timed = study.timed_artifacts(runtime)
        assert timed and all(STAGE_FIRST.match(path)["run"] == study.first_run for path in timed.values())
        assert all(parse_deployment(split_variant(variant)[1])["runtime"] == runtime for variant in timed)
        references = study.latency_references(runtime)
        for reference_map in references.values():
            assert set(reference_map.values()) <= set(timed)  # every reference is timed in the same job
        int8 = {variant for variant in timed if "int8-" in variant}
        assert set(references["parent"]) == int8
        for variant in int8:
            assert references["parent"][variant] == variant.split("/")[0] + "/fp32_onnxruntime"
        assert not any(variant.startswith("baseline/") for variant in references["baseline"])


def test_the_report_reads_every_history_record_and_curve_once(study):
    histories = study.training_histories()
    qat = [name for name, settings in study.recipes.items() if settings["method"] == "qat"]
    assert len(histories) == len(study.runs) * (len(study.models) + len(study.quantized) * len(qat))
    assert histories["seed0/baseline"] == "results/train_baseline/seed0/history.csv"
    records = study.quantization_records()
    expected = len(study.runs) * len(study.quantized) * len(study.recipes)
    assert len(records) == len(set(records.values())) == expected
    assert study.sensitivity_curves() == {run: f"results/sensitivity/{run}/curves.csv" for run in study.runs}
    assert study.figures == FIGURES
    assert study.report_figures()[0] == f"results/report/figures/{FIGURES[0]}.png"
    assert study.tuning == [] and study.tuning_layout == {}


def test_a_tuning_grid_gives_each_split_its_choice_and_candidates(config):
    study = StudyLayout.from_config(_grid_config(config), n_folds=2)
    assert study.runs == ["fold0-seed0", "fold0-seed1", "fold1-seed0", "fold1-seed1"]
    assert study.splits == ["fold0", "fold1"] and study.first_run == "fold0-seed0"
    assert study.tuning == ["bs16-lr0.001", "bs32-lr0.001"]
    layout = study.tuning_layout
    assert set(layout) == {"fold0", "fold1"}
    assert layout["fold1"]["choice"] == study.choice_file("fold1") == "results/tune/fold1/choice.json"
    assert layout["fold1"]["predictions"]["bs32-lr0.001"] == {
        "fold1-seed0": "results/tune/fold1-seed0/bs32-lr0.001/predictions.csv",
        "fold1-seed1": "results/tune/fold1-seed1/bs32-lr0.001/predictions.csv",
    }
    files = study.tuning_files("fold0")
    assert len(files) == 2 * 2 * 2  # predictions and evaluation, of 2 candidates, in 2 runs
    assert all(path.startswith("results/tune/fold0-seed") for path in files)
    candidate = study.candidate_files("fold0-seed1")["bs16-lr0.001"]
    assert candidate["model"] == "results/tune/fold0-seed1/bs16-lr0.001/model.pt"
    assert study.figures[-1] == "baseline_tuning"


def test_no_sensitivity_settings_no_curves(config):
    study = StudyLayout.from_config(_grid_config(config, sensitivity=False), n_folds=None)
    assert study.sensitivity_curves() == {}


def test_stable_settings_do_not_depend_on_key_order():
    first = {"b": 1, "a": {"d": [{"y": 2, "x": 1}], "c": 3}}
    second = {"a": {"c": 3, "d": [{"x": 1, "y": 2}]}, "b": 1}
    assert str(stable_setting(first)) == str(stable_setting(second))
    assert list(stable_setting(first)) == ["a", "b"]
