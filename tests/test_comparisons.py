"""Every comparison of the report: which pairs are compared, the family's adjustment, the verdicts
that summary.csv takes from them, and what the runs could resolve."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunequant.report.aggregate import aggregate, load_runs, with_method_columns
from prunequant.report.comparisons import (
    COMPARISON_COLUMNS,
    Predictions,
    StatisticsSettings,
    compare_all,
    planned_comparisons,
    resolution_summary,
    summary_verdicts,
)
from prunequant.stats import SINGLE_RUN
from prunequant.variants import parse_model

FIXTURE = Path(__file__).parent / "fixtures" / "results_small"
SETTINGS = {
    "confidence": 0.95,
    "bootstrap_samples": 200,
    "multiple_comparisons": "holm",
    "power": 0.8,
    "resolution_pp": 1.0,
}


@pytest.fixture(scope="module")
def fixture_study():
    runs = load_runs(FIXTURE)
    # the fixture's runs.csv predates the method columns: they follow from each model's name
    methods = [parse_model(model) for model in runs["model"]]
    for column in ("criterion", "scope", "schedule"):
        runs[column] = [getattr(method, column) for method in methods]
    summary = with_method_columns(aggregate(runs, FIXTURE, confidence=0.95, n_boot=200), runs)
    return runs, summary


def test_planned_comparisons_name_the_right_references(fixture_study):
    _, summary = fixture_study
    planned = planned_comparisons(summary, recommended="baseline/int8-minmax_onnxruntime")
    pairs = {(row.question, row.variant): row.reference for row in planned.itertuples()}
    int8 = "l1-layer-oneshot-r0.5/int8-minmax_onnxruntime"
    assert pairs["vs_baseline", int8] == "baseline/int8-minmax_onnxruntime"
    assert pairs["vs_parent", int8] == "l1-layer-oneshot-r0.5/fp32_onnxruntime"
    assert ("vs_baseline", "baseline/fp32_torch") not in pairs  # not against itself
    assert ("vs_parent", "l1-layer-oneshot-r0.5/fp32_torch") not in pairs  # fp32 has no parent
    # pruned minus scratch: the pruned model is the variant
    assert pairs["pruned_vs_scratch", "l1-layer-oneshot-r0.5/fp32_torch"] == "scratch-r0.5/fp32_torch"
    # an int8 baseline, recommended, is compared with the fp32 baseline
    assert pairs["recommended_vs_baseline", "baseline/int8-minmax_onnxruntime"] == "baseline/fp32_torch"


def test_comparisons_table_and_summary_verdicts(fixture_study):
    runs, summary = fixture_study
    planned = planned_comparisons(summary)
    comparisons = compare_all(planned, Predictions(runs, FIXTURE), StatisticsSettings(SETTINGS))
    assert list(comparisons.columns) == list(COMPARISON_COLUMNS)
    assert len(comparisons) == len(planned)
    # the estimate is the mean of the per-run differences the row lists
    per_run = (
        comparisons["run_differences_pp"]
        .str.split(";")
        .apply(lambda values: np.mean(list(map(float, values))))
    )
    np.testing.assert_allclose(per_run, comparisons["estimate_pp"], atol=1e-4)
    assert (comparisons["n_units"] == 2).all() and (comparisons["adjustment"] == "holm").all()
    with_verdicts = summary_verdicts(summary, comparisons).set_index("variant")
    for row in comparisons[comparisons["question"] == "vs_baseline"].itertuples():
        assert with_verdicts.at[row.variant, "vs_baseline_verdict"] == row.verdict
        assert with_verdicts.at[row.variant, "vs_baseline_diff_pp"] == row.estimate_pp
    assert with_verdicts.at["baseline/fp32_torch", "vs_baseline_verdict"] == ""


def _predictions(tmp_path: Path, differences: dict[str, list[int]], n: int = 200) -> Predictions:
    """A reference right on every sample, and variants that miss ``k`` samples in each run, a
    different stretch of samples in each run (so that no sample is missed by every run)."""
    rows = []
    for variant, misses in {"reference": [0] * 5, **differences}.items():
        for index, k in enumerate(misses):
            run = f"seed{index}"
            path = tmp_path / run / f"{variant}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            correct = np.ones(n, dtype=bool)
            correct[(40 * index + np.arange(k)) % n] = False
            pd.DataFrame(
                {
                    "split": "test",
                    "sample_id": [f"s{i}" for i in range(n)],
                    "label": 0,
                    "prediction": np.where(correct, 0, 1),
                    "correct": correct,
                }
            ).to_csv(path, index=False)
            rows.append({"run": run, "variant": variant, "predictions": str(path)})
    return Predictions(pd.DataFrame(rows), tmp_path)


def test_holm_takes_back_a_verdict_that_the_raw_interval_would_draw(tmp_path):
    predictions = _predictions(
        tmp_path,
        {
            "clear": [20, 22, 24, 21, 23],  # −10 to −12 pp in every run: survives any adjustment
            "marginal": [1, 2, 5, 1, 3],  # −1.2 pp, raw p about 0.03: Holm's factor 2 takes it back
            "noise": [0, 1, 0, 2, 0],
        },
    )
    planned = pd.DataFrame(
        [("vs_baseline", name, "reference") for name in ("clear", "marginal", "noise")],
        columns=["question", "variant", "reference"],
    )
    raw = compare_all(planned, predictions, StatisticsSettings(SETTINGS | {"multiple_comparisons": "none"}))
    holm = compare_all(planned, predictions, StatisticsSettings(SETTINGS))
    assert list(raw["verdict"]) == ["worse", "worse", "no detectable difference"]
    assert raw.at[1, "p"] < 0.05 < holm.at[1, "p_adjusted"]
    assert list(holm["verdict"]) == ["worse", "no detectable difference", "no detectable difference"]
    # the raw interval is kept as it was: only the verdict changed
    assert holm.at[1, "high"] == raw.at[1, "high"] < 0
    resolution = resolution_summary(holm, StatisticsSettings(SETTINGS))
    assert resolution["n_family"] == 3 and resolution["raw_only"] == 1
    assert resolution["runs_for_resolution"] >= 2


def test_a_pair_asked_twice_is_one_member_of_the_family(tmp_path):
    predictions = _predictions(tmp_path, {"a": [0, 2, 6, 1, 3], "b": [0, 1, 0, 2, 0]})
    once = pd.DataFrame(
        [("vs_baseline", "a", "reference"), ("vs_baseline", "b", "reference")],
        columns=["question", "variant", "reference"],
    )
    twice = pd.concat(
        [once, pd.DataFrame([("recommended_vs_baseline", "a", "reference")], columns=once.columns)]
    )
    settings = StatisticsSettings(SETTINGS)
    first, second = compare_all(once, predictions, settings), compare_all(twice, predictions, settings)
    assert second["p_adjusted"].iloc[:2].tolist() == first["p_adjusted"].tolist()
    assert second["p_adjusted"].iloc[2] == first["p_adjusted"].iloc[0]


def test_one_run_is_no_method_verdict_and_stays_out_of_the_family(fixture_study):
    runs, summary = fixture_study
    one = runs[runs["run"] == "seed0"]
    comparisons = compare_all(
        planned_comparisons(summary), Predictions(one, FIXTURE), StatisticsSettings(SETTINGS)
    )
    assert (comparisons["verdict"] == SINGLE_RUN).all()
    assert comparisons["p_adjusted"].isna().all() and (comparisons["adjustment"] == "").all()
    assert resolution_summary(comparisons, StatisticsSettings(SETTINGS)) == {"n_family": 0}


def test_distilled_variants_are_compared_with_their_plain_twins_and_kept_out_of_the_pruning_questions():
    rows = [
        ("baseline", "fp32_torch", "baseline", "", 0.0),
        ("baseline", "int8-qat_onnxruntime", "baseline", "qat", 0.0),
        ("baseline", "int8-qat_kd_onnxruntime", "baseline", "qat_kd", 0.0),
        ("random-layer-oneshot-r0.5", "fp32_torch", "structured", "", 0.5),
        ("l1-layer-oneshot-r0.5", "fp32_torch", "structured", "", 0.5),
        ("l1-layer-oneshot-r0.5-kd", "fp32_torch", "structured", "", 0.5),
        ("scratch-r0.5", "fp32_torch", "scratch", "", 0.5),
        ("scratch-r0.5-kd", "fp32_torch", "scratch", "", 0.5),
    ]
    summary = pd.DataFrame(
        [
            {
                "variant": f"{model}/{deployment}",
                "model": model,
                "deployment": deployment,
                "precision": "int8" if deployment.startswith("int8") else "fp32",
                "recipe": recipe,
                "family": family,
                "rate": rate,
                "criterion": model.split("-")[0] if family == "structured" else "",
                "scope": "layer" if family == "structured" else "",
                "schedule": "oneshot" if family == "structured" else "",
                "nonzero_parameters": 100,
            }
            for model, deployment, family, recipe, rate in rows
        ]
    )
    planned = planned_comparisons(summary, recipe_twins={"qat_kd": "qat"})
    by_question = planned.groupby("question").apply(
        lambda group: sorted(zip(group["variant"], group["reference"], strict=True)), include_groups=False
    )
    assert by_question["distilled_vs_plain"] == sorted(
        [
            ("baseline/int8-qat_kd_onnxruntime", "baseline/int8-qat_onnxruntime"),
            ("l1-layer-oneshot-r0.5-kd/fp32_torch", "l1-layer-oneshot-r0.5/fp32_torch"),
            ("scratch-r0.5-kd/fp32_torch", "scratch-r0.5/fp32_torch"),
        ]
    )
    assert by_question["distilled_scratch_vs_pruned"] == [
        ("scratch-r0.5-kd/fp32_torch", "l1-layer-oneshot-r0.5/fp32_torch")
    ]
    # the pruning questions compare methods trained on labels alone
    assert by_question["criterion_vs_random"] == [
        ("l1-layer-oneshot-r0.5/fp32_torch", "random-layer-oneshot-r0.5/fp32_torch")
    ]
    assert by_question["pruned_vs_scratch"] == [
        ("l1-layer-oneshot-r0.5/fp32_torch", "scratch-r0.5/fp32_torch")
    ]
    # … while every variant, distilled or not, is still compared with the baseline
    assert ("l1-layer-oneshot-r0.5-kd/fp32_torch", "baseline/fp32_torch") in by_question["vs_baseline"]
