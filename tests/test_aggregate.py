"""The per-variant table, the validation-only recommendation and the Pareto figures,
built from the small fixture of metric and prediction files (no training)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunequant.errors import UserError
from prunequant.report import pareto
from prunequant.report.aggregate import (
    AGGREGATE_COLUMNS,
    aggregate,
    latency_columns,
    load_runs,
    val_test_divergence,
)
from prunequant.report.pareto import PARETO_FIGURES, plot_pareto, plot_pareto_figures
from prunequant.stats import recommend

FIXTURE = Path(__file__).parent / "fixtures" / "results_small"
N_BOOT = 300  # enough for the checks below, and quick


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return aggregate(load_runs(FIXTURE), FIXTURE, confidence=0.95, n_boot=N_BOOT)


@pytest.fixture
def results(tmp_path) -> Path:
    """A writable copy of the fixture."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "results", ignore=shutil.ignore_patterns("*.py")))


def test_load_runs_reads_every_run_and_variant():
    runs = load_runs(FIXTURE)
    assert len(runs) == 2 * 15
    assert set(runs["run"]) == {"seed0", "seed1"}
    assert set(runs.loc[runs["precision"] == "fp32", "recipe"]) == {""}  # empty, not NaN


def test_load_runs_rejects_a_folder_without_runs(tmp_path):
    with pytest.raises(UserError, match="runs.csv"):
        load_runs(tmp_path)


def test_aggregate_has_one_row_per_variant_with_the_documented_columns(table):
    assert len(table) == 15 and table["variant"].is_unique
    latency = [column for batch in (1, 64) for column in latency_columns(batch)]
    assert list(table.columns) == [*AGGREGATE_COLUMNS, *latency]
    assert (table["n_runs"] == 2).all()
    assert set(table["interval_method"]) == {"t over 2 runs"}
    assert (table["accuracy_low"] <= table["accuracy"]).all() and (
        table["accuracy"] <= table["accuracy_high"]
    ).all()
    assert table["latency_batch1_ms"].notna().all() and table["latency_batch64_ms"].notna().all()


def test_aggregate_accuracy_matches_runs_csv_and_predictions(table):
    runs = load_runs(FIXTURE)
    means = runs.groupby("variant")[["accuracy", "val_accuracy"]].mean()
    by_name = table.set_index("variant")
    np.testing.assert_allclose(by_name.loc[means.index, "accuracy"], means["accuracy"])
    np.testing.assert_allclose(by_name.loc[means.index, "val_accuracy"], means["val_accuracy"])


def test_one_run_uses_a_bootstrap_over_test_samples():
    runs = load_runs(FIXTURE)
    table = aggregate(runs[runs["run"] == "seed0"], FIXTURE, confidence=0.95, n_boot=N_BOOT)
    assert set(table["interval_method"]) == {"bootstrap over 80 test samples"}
    assert set(table["val_interval_method"]) == {"bootstrap over 40 validation samples"}


def test_aggregate_rejects_predictions_of_other_samples(results):
    path = results / "seed1/evaluate/scratch-r0.5/fp32_torch/predictions.csv"
    frame = pd.read_csv(path)
    frame.loc[frame["split"] == "test", "sample_id"] = frame.loc[frame["split"] == "test", "sample_id"][
        ::-1
    ].to_numpy()
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match="samples differ"):
        aggregate(load_runs(results), results, confidence=0.95, n_boot=N_BOOT)


def test_aggregate_names_a_missing_predictions_file(results):
    (results / "seed0/evaluate/baseline/fp32_torch/predictions.csv").unlink()
    with pytest.raises(UserError, match="predictions file not found"):
        aggregate(load_runs(results), results, confidence=0.95, n_boot=N_BOOT)


def test_shuffled_test_labels_leave_the_recommendation_unchanged(results, table):
    rng = np.random.default_rng(0)
    runs = load_runs(results)
    for row in runs.itertuples():
        path = results / row.predictions
        frame = pd.read_csv(path)
        test = frame["split"] == "test"
        frame.loc[test, "label"] = rng.permutation(frame.loc[test, "label"].to_numpy())
        frame["correct"] = frame["label"] == frame["prediction"]
        frame.to_csv(path, index=False)
        runs.at[row.Index, "accuracy"] = 100 * frame.loc[test, "correct"].mean()
    runs.to_csv(results / "report" / "runs.csv", index=False)
    shuffled = aggregate(load_runs(results), results, confidence=0.95, n_boot=N_BOOT)
    # the shuffle did change the test numbers ...
    assert not np.allclose(shuffled["accuracy"], table["accuracy"])
    # ... and none of the choices
    for budget in ({"max_drop_pp": 0.0}, {"max_drop_pp": 2.0}, {"max_drop_pp": 10.0, "objective": "macs"}):
        before = recommend(table, reference_variant="baseline/fp32_torch", **budget)
        after = recommend(shuffled, reference_variant="baseline/fp32_torch", **budget)
        assert (before.variant, before.reason) == (after.variant, after.reason)


def test_recommendation_from_the_fixture(table):
    chosen = recommend(table, reference_variant="baseline/fp32_torch", max_drop_pp=2.0)
    assert (
        chosen.variant == "l1-layer-oneshot-r0.3/int8-minmax_onnxruntime"
    )  # smallest within 2 points on val
    assert chosen.row["accuracy"] == pytest.approx(91.25)  # its test accuracy, for the report
    assert (
        recommend(table, reference_variant="baseline/fp32_torch", max_drop_pp=2.0, max_weight_bytes=100)
        is None
    )


def test_val_test_divergence_on_a_hand_made_table():
    table = pd.DataFrame(
        {
            "variant": ["base", "up_on_val", "consistent", "small_gap"],
            "val_accuracy": [90.0, 91.0, 88.0, 90.2],
            "accuracy": [90.0, 88.0, 89.0, 89.9],
            "vs_baseline_reference": ["", "base", "base", "base"],
        }
    )
    flagged = val_test_divergence(table, threshold_pp=1.0)
    assert flagged["variant"].tolist() == ["up_on_val"]
    assert flagged.iloc[0][["val_diff_pp", "test_diff_pp", "gap_pp"]].tolist() == [1.0, -2.0, 3.0]
    assert val_test_divergence(table, threshold_pp=0.1)["variant"].tolist() == ["up_on_val", "small_gap"]


def test_pareto_figures_build_from_the_fixture(table, tmp_path):
    paths = plot_pareto_figures(table, tmp_path)
    assert [path.name for path in paths] == [name for _, _, name, _ in PARETO_FIGURES]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_figure_leaves_out_variants_without_the_cost(table, tmp_path):
    partial = table.assign(latency_batch64_ms=table["latency_batch64_ms"].where(table["precision"] == "int8"))
    path = plot_pareto(partial, x="latency_batch64_ms", x_label="ms", path=tmp_path / "p.png", title="t")
    assert path.is_file()
    with pytest.raises(ValueError, match="lacks"):
        plot_pareto(
            table.drop(columns="accuracy_low"), x="macs", x_label="MACs", path=tmp_path / "x.png", title="t"
        )


def test_pareto_figures_skip_an_unmeasured_latency(table, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(
        pareto, "plot_pareto", lambda table, *, x, x_label, path, title: drawn.append(x) or path
    )
    pareto.plot_pareto_figures(table.assign(latency_batch1_ms=np.nan), tmp_path)
    assert drawn == ["weight_bytes", "macs", "latency_batch64_ms"]
