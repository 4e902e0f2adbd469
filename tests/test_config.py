import copy
from pathlib import Path

import pytest
import yaml

from prunequant.config import config_problems, missing_data_files

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
    assert missing_data_files(data) == [f"config key 'data.npz_path': file '{tmp_path / 'absent.npz'}' does not exist"]
    (tmp_path / "absent.npz").write_bytes(b"")
    assert missing_data_files(data) == []
    assert missing_data_files({"source": "audio", "audio": {"root": str(tmp_path / "nope")}})
