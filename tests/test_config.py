import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunequant.config import (
    active_data_settings,
    config_hash,
    config_problems,
    data_files,
    missing_data_files,
    model_problems,
    study_problems,
    training_gpus,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_is_valid(config):
    assert config_problems(config, SCHEMA) == []


def test_the_snakefiles_checks_import_no_validator_data_package_or_torch():
    # every `snakemake` call imports these; jsonschema loads only when config_problems runs
    code = (
        "import sys, prunequant.config, prunequant.variants, prunequant.workflow.code_digests; "
        "print(sorted(m for m in ('jsonschema', 'prunequant.data', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "edit,key,words",
    [
        (
            lambda c: c["prune"]["structured"][0]["rates"].append(1.5),
            "prune.structured[0].rates[4]",
            "maximum",
        ),
        (lambda c: c["prune"]["structured"][0]["rates"].append(0), "prune.structured[0].rates[4]", "minimum"),
        (lambda c: c["prune"]["structured"][0].update(criterion="l3"), "prune.structured[0].criterion", "l3"),
        (lambda c: c["tune"].update(lrs=[0.001, 0]), "tune.lrs[1]", "minimum"),
        (lambda c: c["tune"].update(batch_sizes=[16, 16]), "tune.batch_sizes", "unique"),
        (lambda c: c["prune"]["structured"][0].update(scope="net"), "prune.structured[0].scope", "net"),
        (lambda c: c["prune"]["structured"][5].pop("steps"), "prune.structured[5]", "steps"),
        (lambda c: c["distillation"][0].update(temperature=0), "distillation[0].temperature", "minimum"),
        (lambda c: c["distillation"][0].update(alpha=1.5), "distillation[0].alpha", "maximum"),
        (lambda c: c["distillation"][0].update(alpha=-0.1), "distillation[0].alpha", "minimum"),
        (lambda c: c["distillation"][0].update(loss="mse"), "distillation[0].loss", "mse"),
        (lambda c: c["prune"]["structured"][0].update(steps=3), "prune.structured[0]", "steps"),
        (
            lambda c: c["prune"]["unstructured"]["sparsities"].append(1.0),
            "prune.unstructured.sparsities[2]",
            "1.0",
        ),
        (lambda c: c["model"].update(arch="transformer"), "model.arch", "transformer"),
        (lambda c: c["model"].update(not_prunable=["conv1"]), "model.not_prunable[0]", "conv1"),
        (lambda c: c["train"].update(optimiser="sgd"), "train", "optimiser"),
        (lambda c: c.update(seeds=[]), "seeds", "should be non-empty"),
        (
            lambda c: c["quantize"]["recipes"][0].update(calibration_method="Magic"),
            "quantize.recipes[0].calibration_method",
            "Magic",
        ),
        (
            lambda c: c["quantize"]["recipes"][3].update(budget_pp=1.0),
            "quantize.recipes[3]",
            "does not apply",
        ),
        (lambda c: c["quantize"]["recipes"][2].pop("budget_pp"), "quantize.recipes[2]", "budget_pp"),
        (lambda c: c["latency"].update(rounds=1), "latency.rounds", "minimum"),
        (lambda c: c["report"].update(objective="accuracy"), "report.objective", "accuracy"),
        (lambda c: c["data"].update(source="npz"), "data.npz_path", "not of type"),
        (lambda c: c["data"].update(bundled_name="NotBundled"), "data.bundled_name", "NotBundled"),
    ],
)
def test_problems_name_the_key(config, edit, key, words):
    broken = copy.deepcopy(config)
    edit(broken)
    problems = config_problems(broken, SCHEMA)
    assert any(f"'{key}'" in p and words in p for p in problems), problems


def test_missing_data_files_are_reported(tmp_path):
    data = {"source": "npz", "npz_path": str(tmp_path / "absent.npz")}
    assert missing_data_files(data) == [
        f"config key 'data.npz_path': file '{tmp_path / 'absent.npz'}' does not exist"
    ]
    (tmp_path / "absent.npz").write_bytes(b"")
    assert missing_data_files(data) == []
    assert missing_data_files({"source": "audio", "audio": {"root": str(tmp_path / "nope")}})


def test_blocks_too_deep_for_the_series_length_are_reported():
    blocks = [{"kernel_size": 25, "stride": 2, "width": 8}] * 2
    assert model_problems(blocks, 200) == []
    (problem,) = model_problems(blocks, 60)
    assert problem.startswith("config key 'model.blocks'") and "data.length=60" in problem


def test_only_the_chosen_sources_settings_reach_the_data_stage(config):
    data = config["data"]
    assert set(active_data_settings(data)) == {
        "source",
        "bundled_name",
        "length",
        "length_method",
        "val_fraction",
        "test_fraction",
        "seed",
        "min_class_samples",
        "test_groups",
        "val_groups",
    }
    changed = copy.deepcopy(data)
    changed["audio"]["n_mfcc"] = 13  # unused by the bundled source
    assert active_data_settings(changed) == active_data_settings(data)
    changed["source"] = "audio"
    assert "audio" in active_data_settings(changed) and "bundled_name" not in active_data_settings(changed)


def test_data_files_are_the_files_the_source_reads(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.WAV", "a.wav", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert data_files({"source": "audio", "audio": {"root": str(tmp_path)}}) == [
        str(tmp_path / "a.wav"),
        str(tmp_path / "b/2.WAV"),
    ]
    assert data_files({"source": "ts", "ts_train": "x.ts", "ts_test": None}) == ["x.ts"]
    assert data_files({"source": "bundled", "bundled_name": "JapaneseVowels"}) == []


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            lambda c: c["model"].update(not_prunable=["blocks.3"]),
            "config key 'model.not_prunable[0]': 'blocks.3' matches no block; the model has "
            "blocks.0 to blocks.0",
        ),
        (
            lambda c: c["model"].update(not_prunable=["blocks.0"]),
            "config key 'model.not_prunable': every block is listed, so nothing can be pruned",
        ),
        (
            lambda c: c["quantize"].update(models=["baseline", "l1-layer-oneshot-r0.7"]),
            "config key 'quantize.models[1]': 'l1-layer-oneshot-r0.7' is not a configured model",
        ),
        (
            lambda c: c["quantize"]["recipes"].append(dict(c["quantize"]["recipes"][0])),
            "config key 'quantize.recipes': the name 'minmax' is used more than once",
        ),
        (
            lambda c: c["data"].update(folds="leave_one_group_out"),
            "config key 'data.folds': leave_one_group_out needs data.source 'audio' with "
            "data.audio.group_regex",
        ),
        (
            lambda c: c["data"].update(test_groups=["spk1"]),
            "config key 'data.test_groups': needs data.source 'audio' with data.audio.group_regex",
        ),
        (
            lambda c: c["distillation"][0].update(teacher="l1-layer-oneshot-r0.7"),
            "config key 'distillation[0].teacher': 'l1-layer-oneshot-r0.7' is not a model of the study",
        ),
        (
            lambda c: c["distillation"][0].update(teacher="scratch-r0.5-kd"),
            "config key 'distillation[0].teacher': 'scratch-r0.5-kd' is itself a distilled student",
        ),
        (
            lambda c: c["prune"]["from_scratch"].update(distill=["kd", "soft"]),
            "config key 'prune.from_scratch.distill[1]': 'soft' names no distillation setting; defined: kd",
        ),
        (
            lambda c: c["distillation"].append(dict(c["distillation"][0])),
            "config key 'distillation': the name 'kd' is used more than once",
        ),
    ],
)
def test_settings_that_do_not_fit_together_name_the_key(config, edit, expected):
    broken = copy.deepcopy(config)
    edit(broken)
    assert config_problems(broken, SCHEMA) == []
    assert any(problem.startswith(expected) for problem in study_problems(broken)), study_problems(broken)


def test_the_shipped_config_fits_together(config):
    assert study_problems(config) == []


def test_the_config_hash_ignores_key_order(config):
    reordered = {key: config[key] for key in reversed(list(config))}
    assert config_hash(reordered) == config_hash(config)
    changed = copy.deepcopy(config)
    changed["seeds"] = [5]
    assert config_hash(changed) != config_hash(config)


def test_training_jobs_hold_a_gpu_only_where_one_can_be_used():
    assert training_gpus("auto", "auto", gpu_visible=True) == 1
    assert training_gpus("auto", "cpu", gpu_visible=True) == 0  # training never touches it
    assert training_gpus("auto", "auto", gpu_visible=False) == 0  # jobs may run side by side
    assert training_gpus(1, "auto", gpu_visible=False) == 1  # a cluster whose submit host has none
