"""`python -m prunequant.compare A B` on copies of the small results fixture (no training)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from prunequant.compare import compare_runs, flatten, main, setting_differences

FIXTURE = Path(__file__).parent / "fixtures" / "results_small"
N_BOOT = ["--n-boot", "300"]


@pytest.fixture
def changed(tmp_path) -> Path:
    """A copy of the fixture in which scratch-r0.5/fp32_torch got every test sample right, the
    learning rate and torch version changed, and one variant is missing."""
    results = Path(shutil.copytree(FIXTURE, tmp_path / "b", ignore=shutil.ignore_patterns("*.py")))
    runs = pd.read_csv(results / "report/runs.csv", keep_default_na=False)
    improved = runs["variant"] == "scratch-r0.5/fp32_torch"
    for relative in runs.loc[improved, "predictions"]:
        frame = pd.read_csv(results / relative)
        test = frame["split"] == "test"
        frame.loc[test, "prediction"] = frame.loc[test, "label"]
        frame.loc[test, "correct"] = True
        frame.to_csv(results / relative, index=False)
    runs.loc[improved, "accuracy"] = 100.0
    runs = runs[runs["variant"] != "sparse-layer-s0.8/fp32_torch"]
    runs.to_csv(results / "report/runs.csv", index=False)
    provenance = json.loads((results / "report/provenance.json").read_text())
    provenance["config"]["train"]["lr"] = 0.001
    provenance["versions"]["torch"] = "2.14.0"
    provenance["date"] = "2027-01-01T00:00:00Z"  # not a setting: never reported
    (results / "report/provenance.json").write_text(json.dumps(provenance))
    return results


def test_a_folder_against_itself_shows_no_difference(capsys):
    assert main([str(FIXTURE), str(FIXTURE), *N_BOOT]) == 0
    out = capsys.readouterr().out
    assert out.count("no detectable difference (2 run(s))") == 15
    assert "Settings that differ (provenance.json)\n\nnone" in out
    assert "Other metrics that changed (means over runs)\n\nnone" in out


def test_changes_in_metrics_verdicts_and_settings(changed, capsys):
    assert main([str(FIXTURE), str(changed), *N_BOOT]) == 0
    out = capsys.readouterr().out
    accuracy_section, rest = out.split("Other metrics that changed")
    settings_section = rest.split("Settings that differ")[1]
    lines = {}
    for section in (accuracy_section, settings_section):
        lines |= {line.split()[0]: line for line in section.splitlines() if line.strip()}
    assert "better (2 run(s))" in lines["scratch-r0.5/fp32_torch"]
    assert "+20.00" in lines["scratch-r0.5/fp32_torch"]  # 80 % → 100 %
    assert "not paired" in lines["sparse-layer-s0.8/fp32_torch"]  # only in A
    assert lines["config.train.lr"].split() == ["config.train.lr", "0.003", "0.001"]
    assert "versions.torch" in out and "2.14.0" in lines["versions.torch"]
    assert "date" not in lines


def test_compare_runs_table(changed):
    accuracy, others = compare_runs(FIXTURE, changed, confidence=0.95, n_boot=300)
    row = accuracy.set_index("variant").loc["scratch-r0.5/fp32_torch"]
    assert row["difference_pp"] == pytest.approx(20.0)
    assert row["paired_diff_pp"] == pytest.approx(20.0)
    assert row["verdict"] == "better" and row["paired_runs"] == 2
    missing = accuracy.set_index("variant").loc["sparse-layer-s0.8/fp32_torch"]
    assert pd.isna(missing["accuracy_b"]) and missing["verdict"] == ""
    assert set(others["variant"]) == {"sparse-layer-s0.8/fp32_torch"}  # its metrics vanished in B


def test_other_samples_are_not_paired(changed):
    runs = pd.read_csv(changed / "report/runs.csv", keep_default_na=False)
    for relative in runs.loc[runs["variant"] == "baseline/fp32_torch", "predictions"]:
        frame = pd.read_csv(changed / relative)
        frame["sample_id"] = "other-" + frame["sample_id"]
        frame.to_csv(changed / relative, index=False)
    accuracy, _ = compare_runs(FIXTURE, changed, confidence=0.95, n_boot=300)
    assert accuracy.set_index("variant").at["baseline/fp32_torch", "verdict"] == ""


def test_not_a_results_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(FIXTURE), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a results folder" in err and str(tmp_path) in err


def test_runs_as_a_module(tmp_path):
    command = [sys.executable, "-m", "prunequant.compare", str(tmp_path), str(FIXTURE)]
    bad = subprocess.run(command, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and not bad.stdout


def test_flatten_and_setting_differences():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}
    a = {"config": {"x": 1, "y": {"z": 2}}, "seeds": [0, 1], "versions": {"torch": "1"}, "date": "then"}
    b = {"config": {"x": 1, "y": {"z": 3}, "new": True}, "seeds": [0], "versions": {"torch": "1"}}
    assert setting_differences(a, b) == [
        ("config.new", "<absent>", True),
        ("config.y.z", 2, 3),
        ("seeds", [0, 1], [0]),
    ]
