"""End to end: leave-one-speaker-out folds with a baseline-tuning grid, on a tiny audio dataset.

Each fold chooses its own baseline on its validation split; every fold's runs start pruning
and quantization from that choice, and the report shows the grid and the per-fold results.
"""

import csv
import json

import pytest
from workflow_support import make_project, minimal_config, planned_jobs, snakemake, write_config

GRID = ["bs4-lr0.001", "bs8-lr0.001"]
FOLDS = ["fold0", "fold1", "fold2"]  # three synthesized speakers, each held out once


@pytest.fixture(scope="module")
def tuned_folds(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tuned")
    make_project(workdir)
    config = minimal_config(workdir / "audio")
    config["data"]["folds"] = "leave_one_group_out"
    config["tune"] = {"batch_sizes": [4, 8], "lrs": []}
    write_config(workdir, config)
    result = snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, config


def test_every_fold_trains_the_grid_and_adopts_its_validation_choice(tuned_folds):
    workdir, _ = tuned_folds
    results = workdir / "results"
    for fold in FOLDS:
        choice = json.loads((results / "tune" / fold / "choice.json").read_text())
        assert choice["chosen"] in GRID
        ranked = sorted(choice["candidates"], key=lambda row: (-row["val_accuracy"], row["val_loss"]))
        assert ranked[0]["candidate"] == choice["chosen"]
        run = f"{fold}-seed0"
        baseline = results / "train_baseline" / run
        chosen = results / "tune" / run / choice["chosen"]
        assert (baseline / "model.pt").read_bytes() == (chosen / "model.pt").read_bytes()
        assert (baseline / "predictions.csv").read_text() == (chosen / "predictions.csv").read_text()
        evaluation = json.loads((baseline / "evaluation.json").read_text())
        assert evaluation["tuned_from"] == choice["chosen"]
        assert evaluation["artifact"] == f"results/train_baseline/{run}/model.pt"
        for candidate in GRID:  # each candidate trained with its own batch size
            metrics = json.loads((results / "tune" / run / candidate / "metrics.json").read_text())
            assert metrics["batch_size"] == int(candidate[2]) and metrics["lr"] == 0.001


def test_the_report_shows_the_grid_the_folds_and_their_speakers(tuned_folds):
    workdir, _ = tuned_folds
    report = workdir / "results" / "report"
    text = (report / "report.md").read_text()
    assert "## Baseline tuning" in text
    assert all(f"| `{fold}` | `{candidate}`" in text for fold in FOLDS for candidate in GRID)
    assert (report / "figures" / "baseline_tuning.png").stat().st_size > 10_000
    runs = {row["run"] for row in csv.DictReader((report / "runs.csv").open())}
    assert runs == {f"{fold}-seed0" for fold in FOLDS}
    summary = {row["variant"]: row for row in csv.DictReader((report / "summary.csv").open())}
    assert summary["baseline/fp32_torch"]["interval_method"] == "t over 3 runs"


def test_a_new_grid_point_trains_only_itself_then_redoes_what_follows_the_choice(tuned_folds):
    workdir, config = tuned_folds
    changed = json.loads(json.dumps(config))
    changed["tune"]["batch_sizes"] = [4, 8, 16]
    write_config(workdir, changed)
    try:
        planned = planned_jobs(workdir)
    finally:
        write_config(workdir, config)
    assert planned["train_candidate"] == len(FOLDS)  # bs16 in each fold; bs4 and bs8 are kept
    assert planned["choose_baseline"] == len(FOLDS)
    assert planned["adopt_baseline"] == len(FOLDS)
    assert "train_baseline" not in planned
