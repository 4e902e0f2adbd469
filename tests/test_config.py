import copy
from pathlib import Path

import pytest
import yaml

from prunequant.config import (
    active_data_settings,
    config_problems,
    data_files,
    missing_data_files,
    model_problems,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_is_valid(config):
    assert config_problems(config, SCHEMA) == []


@pytest.mark.parametrize(
    "edit,key,words",
    [
        (lambda c: c["prune"]["rates"].append(1.5), "prune.rates[7]", "maximum"),
        (lambda c: c["prune"]["rates"].append(0), "prune.rates[7]", "minimum"),
        (lambda c: c["train"].update(optimiser="sgd"), "train", "optimiser"),
        (lambda c: c["quantize"].update(calibration_method="Magic"), "quantize.calibration_method", "Magic"),
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
