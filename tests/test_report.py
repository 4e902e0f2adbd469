"""The report builds from a small fixture of metric files, without any training."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunequant.layout import FOREST_QUESTIONS
from prunequant.report.build import ReportInputs, build_report, figure_text
from prunequant.report.comparisons import (
    SUMMARY_FIELDS,
    Predictions,
    StatisticsSettings,
    compare_all,
    planned_comparisons,
)
from prunequant.variants import parse_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "results_small"
# The fixture has no tuning grid, so no tuning figure (that one is tested in test_tuning*.py).
NOT_FIGURES = ("runs", "summary", "comparisons", "baseline_tuning")
FIGURES = [path.stem for path in (ROOT / "captions").glob("*.rst") if path.stem not in NOT_FIGURES]
SETTINGS = {
    "max_drop_pp": 2.0,
    "max_weight_bytes": None,
    "max_latency_ms": None,
    "latency_batch": 1,
    "objective": "weight_bytes",
    "confidence": 0.9,  # not the default: the report must print the level it was given
    "bootstrap_samples": 200,
    "multiple_comparisons": "holm",
    "power": 0.8,
    "resolution_pp": 1.0,
    "devices": ["cortex-m4", "cortex-m0plus"],
    "reserved_ram_bytes": 8192,
}


def _metric_files(results: Path) -> list[Path]:
    """One metrics JSON per row of the fixture's runs.csv, beside its predictions."""
    runs = pd.read_csv(FIXTURE / "report" / "runs.csv", keep_default_na=False)
    paths = []
    for row in runs.to_dict("records"):
        variant = parse_model(row["model"])
        record = {key: value for key, value in row.items() if key not in ("method", "predictions")}
        record.update(
            criterion=variant.criterion,
            scope=variant.scope,
            schedule=variant.schedule,
            steps=variant.steps,
            spacing=variant.spacing,
            max_drop_pp=variant.max_drop_pp,
        )
        for key in ("agreement_pct", "mean_abs_logit_error", "max_abs_logit_error"):
            record[key] = None if record[key] == "" else float(record[key])
        path = results / Path(row["predictions"]).parent / "metrics.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def _latency_record(runs: pd.DataFrame, runtime: str) -> dict:
    variants = {}
    for variant in runs.loc[runs["runtime"] == runtime, "variant"].unique():
        slower = 1.0 if variant.startswith("baseline/") else 0.8
        variants[variant] = {
            f"batch{batch}": {
                "median_ms": batch * 0.01 * slower,
                "low_ms": batch * 0.009 * slower,
                "high_ms": batch * 0.011 * slower,
                "speedups": {
                    "baseline": {
                        "reference": f"baseline/{variant.split('/')[1]}",
                        "speedup": 1 / slower,
                        "speedup_low": 1 / slower - 0.05,
                        "speedup_high": 1 / slower + 0.05,
                        "verdict": "faster" if slower < 1 else "no measurable difference",
                    }
                }
                if not variant.startswith("baseline/")
                else {},
            }
            for batch in (1, 64)
        }
    return {"runtime": runtime, "threads": 1, "rounds": 10, "variants": variants}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    results = tmp / "results"
    shutil.copytree(FIXTURE, results, ignore=shutil.ignore_patterns("report", "*.py"))
    metric_paths = _metric_files(results)
    runs = pd.read_csv(FIXTURE / "report" / "runs.csv", keep_default_na=False)
    latency_paths = {}
    for runtime in ("torch", "onnxruntime"):
        latency_paths[runtime] = tmp / f"{runtime}.json"
        latency_paths[runtime].write_text(json.dumps(_latency_record(runs, runtime)))
    histories = {}
    for run in ("seed0", "seed1"):
        for model in runs["model"].unique():
            path = tmp / "histories" / run / f"{model}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            epochs = np.arange(1, 6)
            pd.DataFrame(
                {
                    "epoch": epochs,
                    "train_loss": 1 / epochs,
                    "train_accuracy": 80 + epochs,
                    "val_loss": 1 / epochs,
                    "val_accuracy": 75 + 2 * epochs,
                    "learning_rate": 1e-3,
                    "train_time": 0.1,
                    "val_time": 0.01,
                }
            ).to_csv(path, index=False)
            histories[f"{run}/{model}"] = path
    dataset = tmp / "fixed" / "dataset.json"
    dataset.parent.mkdir()
    dataset.write_text(
        json.dumps(
            {
                "source": "npz",
                "classes": ["a", "b", "c"],
                "n_channels": 4,
                "length": 32,
                "n_train": 160,
                "n_val": 40,
                "n_test": 80,
                "groups": {"train": [], "val": [], "test": []},
            }
        )
    )
    report = results / "report"
    (report / "figures").mkdir(parents=True)
    out = {
        name: report / file
        for name, file in (
            ("runs", "runs.csv"),
            ("summary", "summary.csv"),
            ("comparisons", "comparisons.csv"),
            ("latency", "latency.csv"),
            ("latency_all", "latency_all.csv"),
            ("provenance", "provenance.json"),
            ("markdown", "report.md"),
        )
    }
    config = {"seeds": [0, 1], "report": SETTINGS}
    inputs = ReportInputs(
        metric_paths=metric_paths,
        latency_paths=latency_paths,
        histories=histories,
        training_metrics=[],
        quantization_records={},
        sensitivity_curves={},
        sensitivity_records={},
        dataset_metadata=[dataset],
    )
    outcome = build_report(
        inputs,
        results_dir=results,
        settings=SETTINGS,
        config=config,
        run_names=["seed0", "seed1"],
        workflow_dir=ROOT,
        captions_dir=ROOT / "captions",
        out=out,
        figure_paths={name: report / "figures" / f"{name}.png" for name in FIGURES},
    )
    return report, outcome


def test_every_output_is_written(built):
    report, _ = built
    for name in ("runs.csv", "summary.csv", "comparisons.csv", "latency.csv", "provenance.json", "report.md"):
        assert (report / name).stat().st_size > 0
    for name in FIGURES:
        assert (report / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_has_intervals_and_verdicts(built):
    report, _ = built
    summary = pd.read_csv(report / "summary.csv", keep_default_na=False)
    assert len(summary) == 15
    assert (summary["accuracy_low"] <= summary["accuracy"]).all()
    assert (summary["accuracy"] <= summary["accuracy_high"]).all()
    others = summary[summary["model"] != "baseline"]
    assert set(others["vs_baseline_verdict"]) <= {"better", "worse", "no detectable difference"}
    int8 = summary[summary["precision"] == "int8"]
    assert (int8["vs_parent_reference"] == int8["model"] + "/fp32_onnxruntime").all()


def test_every_verdict_follows_its_adjusted_p(built):
    """In comparisons.csv and in summary.csv, better / worse exactly where the adjusted p < 1 − confidence."""
    report, _ = built
    alpha = 1 - SETTINGS["confidence"]
    comparisons = pd.read_csv(report / "comparisons.csv")
    assert set(comparisons["question"]) >= {"vs_baseline", "vs_parent", "pruned_vs_scratch"}
    decided = comparisons["p_adjusted"] < alpha
    expected = np.where(
        decided, np.where(comparisons["estimate_pp"] > 0, "better", "worse"), "no detectable difference"
    )
    assert (comparisons["verdict"] == expected).all()
    assert (comparisons["p_adjusted"] >= comparisons["p"] - 1e-12).all()  # Holm never lowers a p
    summary = pd.read_csv(report / "summary.csv", keep_default_na=False).set_index("variant")
    for row in comparisons[comparisons["question"].isin(["vs_baseline", "vs_parent"])].itertuples():
        assert summary.at[row.variant, f"{row.question}_verdict"] == row.verdict
        assert float(summary.at[row.variant, f"{row.question}_p_adjusted"]) == pytest.approx(row.p_adjusted)


def test_forest_plots_are_drawn_and_captioned(built):
    report, _ = built
    text = (report / "report.md").read_text()
    for question in FOREST_QUESTIONS:
        name = f"forest_{question}"
        title, caption = figure_text(ROOT / "captions", name)
        assert title.startswith("Forest plot") and "per-run differences" in caption
        assert (report / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"![{title}](figures/{name}.png)" in text


def test_the_markdown_answers_the_questions(built):
    report, outcome = built
    text = (report / "report.md").read_text()
    for heading in (
        "## Recommendation",
        "## Every variant",
        "## The pruning study",
        "### Pruned and fine-tuned vs trained from scratch",
        "## The quantization study",
        "## Pruning vs quantization: the claims, measured",
        "## Latency",
        "## Per-class test accuracy",
    ):
        assert heading in text, heading
    assert f"**Ship `{outcome['recommendation']}`**" in text
    assert "validation" in text.split("## Recommendation")[1].split("##")[0]
    for name in FIGURES:
        assert f"figures/{name}.png" in text
        assert figure_text(ROOT / "captions", name)[0] in text
    assert "vs `baseline/" in text  # a speedup always names its reference
    assert "with 90% intervals" in text and "test acc % [90% CI]" in text


def test_the_recommendation_ignores_test_labels(built, tmp_path):
    """Shuffling the test labels changes test accuracy but never the recommendation."""
    report, outcome = built
    results = report.parent
    shuffled = tmp_path / "results"
    shutil.copytree(results, shuffled)
    rng = np.random.default_rng(0)
    for path in shuffled.rglob("predictions.csv"):
        table = pd.read_csv(path)
        test = table["split"] == "test"
        table.loc[test, "correct"] = rng.permutation(table.loc[test, "correct"].to_numpy())
        table.to_csv(path, index=False)
    from prunequant.report.aggregate import aggregate
    from prunequant.stats import recommend

    runs = pd.read_csv(shuffled / "report" / "runs.csv", keep_default_na=False)
    summary = aggregate(runs, shuffled, confidence=0.95, n_boot=200)
    chosen = recommend(summary, reference_variant="baseline/fp32_torch", max_drop_pp=SETTINGS["max_drop_pp"])
    assert chosen.variant == outcome["recommendation"]


def test_provenance_names_what_made_the_numbers(built):
    report, _ = built
    meta = json.loads((report / "provenance.json").read_text())
    assert meta["seeds"] == [0, 1] and len(meta["config_hash"]) == 12
    assert {"torch", "onnxruntime", "snakemake"} <= set(meta["versions"])
    assert meta["git_commit"] and meta["date"].endswith("UTC")


def test_a_ratio_never_calls_something_slower_faster_and_always_names_its_reference():
    from prunequant.report.markdown import speedup

    slower = {
        "x_speedup": 0.68,
        "x_speedup_low": 0.61,
        "x_speedup_high": 0.74,
        "x_speedup_verdict": "slower",
        "x_reference": "baseline/fp32_torch",
    }
    text = speedup(slower, "x")
    assert "faster" not in text and text.startswith("0.68×") and "`baseline/fp32_torch`" in text
    unclear = dict(
        slower,
        x_speedup=1.02,
        x_speedup_low=0.97,
        x_speedup_high=1.06,
        x_speedup_verdict="no measurable difference",
    )
    assert "no measurable difference" in speedup(unclear, "x")


def test_the_recipe_per_model_is_chosen_on_validation_never_on_test():
    from prunequant.report.build import _chosen_recipes

    summary = pd.DataFrame(
        {
            "model": ["baseline"] * 3,
            "precision": ["int8"] * 3,
            "recipe": ["minmax", "percentile", "qat"],
            "val_accuracy": [98.0, 97.0, 98.0],
            "accuracy": [90.0, 99.0, 91.0],  # test says percentile; validation must decide
            "weight_bytes": [4000, 4000, 3900],
        }
    )
    assert _chosen_recipes(summary) == {"baseline": "qat"}  # best validation, then fewer bytes
    summary["accuracy"] = summary["accuracy"].sample(frac=1, random_state=0).to_numpy()
    assert _chosen_recipes(summary) == {"baseline": "qat"}


def _predictions_file(path: Path, predicted: list[int], labels: list[int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "split": "test",
            "sample_id": [f"s{index}" for index in range(len(labels))],
            "index": range(len(labels)),
            "label": labels,
            "prediction": predicted,
            "correct": [p == y for p, y in zip(predicted, labels, strict=True)],
        }
    ).to_csv(path, index=False)
    return str(path)


def _statistics(**changes) -> StatisticsSettings:
    return StatisticsSettings(SETTINGS | {"bootstrap_samples": 200} | changes)


def test_a_variant_that_behaves_as_its_reference_is_called_identical_not_merely_undetected(tmp_path):
    """Same predictions everywhere: say so; same accuracy from different predictions: do not."""
    from prunequant.report.markdown import difference

    labels = [0, 1, 2, 0, 1, 2]
    predicted = {  # variant → the classes it predicts (the same in both runs)
        "layer": [0, 1, 2, 0, 1, 1],
        "global": [0, 1, 2, 0, 1, 1],  # the same model under another name
        "other": [0, 1, 2, 0, 2, 2],  # the same accuracy, one sample flipped each way
    }
    rows = [
        {
            "run": run,
            "variant": name,
            "predictions": _predictions_file(tmp_path / run / f"{name}.csv", classes, labels),
        }
        for run in ("seed0", "seed1")
        for name, classes in predicted.items()
    ]
    planned = pd.DataFrame(
        [("global_vs_layer", "global", "layer"), ("global_vs_layer", "other", "layer")],
        columns=["question", "variant", "reference"],
    )
    comparisons = compare_all(planned, Predictions(pd.DataFrame(rows), tmp_path), _statistics())
    same, unlike = (
        {f"cmp_{field}": row[column] for field, column in SUMMARY_FIELDS.items()}
        for row in comparisons.to_dict("records")
    )
    assert same["cmp_identical"] and same["cmp_diff_pp"] == 0.0
    assert "identical predictions" in difference(same, "cmp")
    assert not unlike["cmp_identical"] and unlike["cmp_diff_pp"] == 0.0
    assert "no detectable difference" in difference(unlike, "cmp")


def test_the_scope_comparison_says_when_global_ranking_was_layer_wise_ranking(tmp_path):
    from prunequant.report.sections import pruning_section

    labels = [0, 1, 2, 0, 1, 2]

    def section(global_predicts: list[int]) -> str:
        models = {"l1-layer-oneshot-r0.5": [0, 1, 2, 0, 1, 1], "l1-global-oneshot-r0.5": global_predicts}
        runs, summary = [], []
        for name, classes in models.items():
            variant = f"{name}/fp32_torch"
            for run in ("seed0", "seed1"):
                path = tmp_path / "".join(map(str, global_predicts)) / run / name / "predictions.csv"
                runs.append(
                    {"run": run, "variant": variant, "predictions": _predictions_file(path, classes, labels)}
                )
            summary.append(
                {
                    "model": name,
                    "variant": variant,
                    "deployment": "fp32_torch",
                    "precision": "fp32",
                    "family": "structured",
                    "criterion": "l1",
                    "scope": name.split("-")[1],
                    "schedule": "oneshot",
                    "rate": 0.5,
                    "parameters": 100,
                    "nonzero_parameters": 100,
                    "accuracy": 83.3,
                    "accuracy_low": 80.0,
                    "accuracy_high": 86.0,
                }
            )
        summary = pd.DataFrame(summary)
        planned = planned_comparisons(summary)
        assert list(planned["question"]) == ["global_vs_layer"]
        comparisons = compare_all(planned, Predictions(pd.DataFrame(runs), tmp_path), _statistics())
        return pruning_section(summary, comparisons, sensitivity_rates={}, latency=pd.DataFrame())

    assert "single prunable block" in section([0, 1, 2, 0, 1, 1])
    assert "single prunable block" not in section([0, 1, 2, 0, 2, 2])
