"""The report job: tables, figures and the Markdown report from the study's files.

Inputs are files only (metrics and predictions of every evaluation, timing records, training
histories, quantization and sensitivity records, dataset descriptions); outputs are
``runs.csv`` (one row per run and variant), ``summary.csv`` (one row per variant, with
intervals and verdicts), ``latency.csv``, ``provenance.json``, the figures and ``report.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunequant.io import read_json, write_json
from prunequant.report.aggregate import aggregate, val_test_divergence, with_method_columns
from prunequant.report.collect import build_latency, build_runs, provenance, read_histories
from prunequant.report.comparisons import (
    SUMMARY_FIELDS,
    Predictions,
    StatisticsSettings,
    compare_all,
    planned_comparisons,
    resolution_summary,
    summary_verdicts,
    trained_on_labels,
)
from prunequant.report.device import (
    device_section,
    plot_device_budgets,
    render_device_section,
    split_unavailable,
)
from prunequant.report.forest import FOREST_QUESTIONS, plot_forest
from prunequant.report.markdown import render_report
from prunequant.report.pareto import plot_pareto
from prunequant.report.quantization_sections import claims_section, quantization_section
from prunequant.report.sections import (
    distillation_section,
    per_class_section,
    pruning_section,
    tuning_section,
)
from prunequant.report.study_figures import (
    empty_figure,
    plot_confusion,
    plot_criteria,
    plot_pruned_vs_scratch,
    plot_quantization_sensitivity,
    plot_schedules_and_scopes,
    plot_sensitivity,
    plot_structured_vs_unstructured,
    plot_training_curves,
    plot_tuning,
)
from prunequant.stats import ADJUSTMENT_NAMES, recommend
from prunequant.tuning import tuning_table
from prunequant.variants import distilled_recipe_twins, parse_model

__all__ = ["ReportInputs", "build_report", "figure_text"]

PathLike = str | os.PathLike

_PARETO = {
    "pareto_weight_bytes": ("weight_bytes", "stored weight bytes (B)"),
    "pareto_macs": ("macs", "multiply-accumulates per sample"),
    "pareto_latency_b1": ("latency_batch1_ms", "latency at batch 1 (ms)"),
    "pareto_latency_b64": ("latency_batch64_ms", "latency at batch 64 (ms)"),
}


def figure_text(captions_dir: PathLike, name: str) -> tuple[str, str]:
    """(title, caption) of a figure from ``captions/<name>.rst``: "Title. Caption…".

    The HTML report shows the same file, so the two reports never say different things.
    """
    text = (Path(captions_dir) / f"{name}.rst").read_text().strip()
    title, _, caption = text.partition(". ")
    return title, caption


def _pruning_vs_quantization(summary: pd.DataFrame, chosen: Mapping[str, str], path: PathLike) -> None:
    fp32 = summary[summary["deployment"] == "fp32_torch"]
    rows = [fp32[fp32["family"] == "baseline"].assign(family="baseline")]
    rows.append(fp32[fp32["family"].isin(["structured", "sensitivity"])].assign(family="pruning"))
    int8 = summary[summary["precision"] == "int8"]
    int8 = int8[
        [chosen.get(model) == recipe for model, recipe in zip(int8["model"], int8["recipe"], strict=True)]
    ]
    rows.append(int8[int8["model"] == "baseline"].assign(family="quantization"))
    rows.append(int8[int8["model"] != "baseline"].assign(family="pruning + quantization"))
    table = pd.concat(rows, ignore_index=True)
    if table["family"].nunique() < 2:
        empty_figure(path, "Needs pruned and quantized variants.")
        return
    plot_pareto(
        table,
        x="weight_bytes",
        x_label="stored weight bytes (B)",
        path=path,
        title="Pruning, quantization and both: test accuracy against stored bytes",
    )


def _chosen_recipes(summary: pd.DataFrame) -> dict[str, str]:
    """Per quantized model, the recipe with the best VALIDATION accuracy (ties: fewer bytes, name)."""
    int8 = summary[summary["precision"] == "int8"]
    chosen = {}
    for model, rows in int8.groupby("model"):
        best = rows.sort_values(
            ["val_accuracy", "weight_bytes", "recipe"], ascending=[False, True, True]
        ).iloc[0]
        chosen[model] = best["recipe"]
    return chosen


def _quantization_layers(records: Mapping[str, Mapping]) -> pd.DataFrame:
    rows = []
    for key, record in records.items():
        run, model, _ = key.split("/")
        for layer in record.get("layers", record.get("layer_sensitivity", [])):
            rows.append(
                {
                    "run": run,
                    "model": model,
                    "node": layer["node"],
                    "drop_pp": layer["drop_pp"],
                    "kept_float": layer["node"] in record.get("float_nodes", []),
                }
            )
    return pd.DataFrame(rows, columns=["run", "model", "node", "drop_pp", "kept_float"])


def _sensitivity_rates(records: Mapping[str, PathLike]) -> dict[str, dict]:
    """Model → {block: rate} of each sensitivity-derived model's pruning record (first run)."""
    rates = {}
    for model, path in records.items():
        final = read_json(path)["final_rate"]
        rates[model] = final if isinstance(final, dict) else {}
    return rates


def _recommendation_comparison(variant: str, comparisons: pd.DataFrame) -> dict:
    """The recommended variant against the fp32 baseline as ``vs_reference_*`` columns, whatever its
    deployment (an int8 baseline is compared with the fp32 baseline too)."""
    rows = comparisons[
        (comparisons["variant"] == variant) & (comparisons["reference"] == "baseline/fp32_torch")
    ]
    if rows.empty:
        return {}
    first = rows.iloc[0]
    return {f"vs_reference_{field}": first[column] for field, column in SUMMARY_FIELDS.items()}


def _varying_architectures(runs: pd.DataFrame) -> list[str]:
    """Variants whose parameter count differs between runs: their architecture depends on the run."""
    counts = runs.groupby("variant", sort=False)["parameters"].nunique()
    return [variant for variant, distinct in counts.items() if distinct > 1]


@dataclass(frozen=True)
class ReportInputs:
    """The files the report reads, as the report rule declares them.

    ``tuning`` (baseline tuning only): split → ``choice`` (the choice JSON) and ``predictions`` /
    ``evaluation``, each candidate → run → file.
    """

    metric_paths: Sequence[PathLike]  # every stage's evaluation JSON
    latency_paths: Mapping[str, PathLike]  # runtime → its timing record
    histories: Mapping[str, PathLike]  # run/model (run/model/int8-recipe for QAT) → history CSV
    training_metrics: Sequence[PathLike]  # the metrics JSON of every trained fp32 model
    quantization_records: Mapping[str, PathLike]  # run/model/int8-recipe → its record
    sensitivity_curves: Mapping[str, PathLike]  # run → its per-block curves
    sensitivity_records: Mapping[str, PathLike]  # sensitivity-derived model → its pruning record
    dataset_metadata: Sequence[PathLike]  # every split's dataset.json
    tuning: Mapping[str, Mapping] | None = None


def build_report(
    inputs: ReportInputs,
    *,
    results_dir: PathLike,
    settings: Mapping,
    config: Mapping,
    run_names: Sequence[str],
    workflow_dir: PathLike,
    captions_dir: PathLike,
    out: Mapping[str, PathLike],
    figure_paths: Mapping[str, PathLike],
) -> dict:
    """Write every report output; returns the recommendation (or None) and the chosen recipes."""
    results_dir = Path(results_dir)
    runs, unavailable = split_unavailable(build_runs(inputs.metric_paths, results_dir))
    runs.to_csv(out["runs"], index=False)
    latency = build_latency({runtime: read_json(path) for runtime, path in inputs.latency_paths.items()})
    # The per-variant table carries the speedups against the baseline; int8-vs-parent ones stay
    # in latency.csv (and the quantization section).
    against_baseline = (
        latency[latency["against"].fillna("baseline") == "baseline"] if len(latency) else latency
    )
    against_baseline.drop(columns=["against"], errors="ignore").to_csv(out["latency"], index=False)
    latency.to_csv(out["latency_all"], index=False)
    statistics = StatisticsSettings(settings)
    summary = aggregate(runs, results_dir, confidence=statistics.confidence, n_boot=statistics.n_boot)
    summary = with_method_columns(summary, runs)
    meta = provenance(config, workflow_dir=workflow_dir, training_devices=["cpu"])
    meta["device"]["training"] = sorted(
        {read_json(path).get("device", "cpu") for path in inputs.training_metrics}
    ) or ["cpu"]
    write_json(meta, out["provenance"])

    latency_objective = f"latency_batch{settings['latency_batch']}_ms"
    recommendation = recommend(
        summary,
        reference_variant="baseline/fp32_torch",
        max_drop_pp=settings["max_drop_pp"],
        max_weight_bytes=settings["max_weight_bytes"],
        max_latency_ms=settings["max_latency_ms"],
        latency_batch=settings["latency_batch"],
        objective=latency_objective if settings["objective"] == "latency" else settings["objective"],
    )
    predictions = Predictions(runs, results_dir)
    comparisons = compare_all(
        planned_comparisons(
            summary,
            None if recommendation is None else recommendation.variant,
            recipe_twins=distilled_recipe_twins(config.get("quantize", {}).get("recipes", [])),
        ),
        predictions,
        statistics,
    )
    comparisons.to_csv(out["comparisons"], index=False)
    summary = summary_verdicts(summary, comparisons)
    divergent = val_test_divergence(summary, threshold_pp=100 / max(summary["n_test"].min(), 1))
    summary["divergent"] = summary["variant"].isin(divergent["variant"])
    summary.to_csv(out["summary"], index=False)
    if recommendation is not None:
        recommendation.row.update(_recommendation_comparison(recommendation.variant, comparisons))
    chosen = _chosen_recipes(summary)
    records = {key: read_json(path) for key, path in inputs.quantization_records.items()}
    first_records = {
        key.split("/", 1)[1]: record for key, record in records.items() if key.startswith(f"{run_names[0]}/")
    }
    datasets = [read_json(path) | {"split_name": Path(path).parent.name} for path in inputs.dataset_metadata]
    curves = (
        pd.concat(
            [pd.read_csv(path).assign(run=run) for run, path in inputs.sensitivity_curves.items()],
            ignore_index=True,
        )
        if inputs.sensitivity_curves
        else pd.DataFrame(columns=["block", "rate", "val_accuracy", "run"])
    )

    # Figures
    for name, (column, label) in _PARETO.items():
        if pd.to_numeric(summary[column], errors="coerce").notna().any():
            plot_pareto(
                summary,
                x=column,
                x_label=label,
                path=figure_paths[name],
                title=figure_text(captions_dir, name)[0],
            )
        else:
            empty_figure(figure_paths[name], f"No variant has a value of {column}.")
    _pruning_vs_quantization(summary, chosen, figure_paths["pruning_vs_quantization"])
    # The pruning study compares methods trained on labels alone; distillation has its own section.
    undistilled = trained_on_labels(summary)
    plot_criteria(undistilled, figure_paths["criteria"])
    plot_schedules_and_scopes(undistilled, figure_paths["schedules_and_scopes"])
    plot_structured_vs_unstructured(undistilled, figure_paths["structured_vs_unstructured"])
    plot_pruned_vs_scratch(undistilled, figure_paths["pruned_vs_scratch"])
    plot_sensitivity(curves, figure_paths["sensitivity"])
    plot_quantization_sensitivity(_quantization_layers(records), figure_paths["quantization_sensitivity"])
    history_table = read_histories(inputs.histories)
    families = {}
    for key in inputs.histories:
        model = key.split("/", 1)[1]
        families[model] = "qat" if "/int8-" in model else parse_model(model).family
    plot_training_curves(history_table, families, figure_paths["training_curves"])
    shown = {"baseline": "baseline/fp32_torch"}
    if recommendation is not None and recommendation.variant != "baseline/fp32_torch":
        shown["recommended"] = recommendation.variant
    classes = [str(name) for name in datasets[0]["classes"]]
    per_class, matrices = per_class_section(predictions, shown, classes)
    plot_confusion(matrices, classes, figure_paths["confusion"])

    for question in FOREST_QUESTIONS:
        plot_forest(comparisons, question, figure_paths[f"forest_{question}"])

    tflm_recipes = sorted(set(runs.loc[runs["runtime"] == "tflm", "recipe"]))
    recipe_order = [recipe["name"] for recipe in config.get("quantize", {}).get("recipes", [])]
    device = device_section(
        runs,
        summary,
        devices=settings["devices"],
        reserved_ram_bytes=settings["reserved_ram_bytes"],
        first_recipe=next((name for name in recipe_order if name in tflm_recipes), None),
        unavailable=unavailable,
    )
    plot_device_budgets(device, figure_paths["device_budgets"])
    sections = {
        "pruning": pruning_section(
            undistilled,
            comparisons,
            sensitivity_rates=_sensitivity_rates(inputs.sensitivity_records),
            latency=latency,
        ),
        "quantization": quantization_section(summary, latency, first_records, chosen),
        "distillation": distillation_section(summary, comparisons),
        "claims": claims_section(undistilled, chosen),
        "device": render_device_section(device),
        "per_class": per_class,
    }
    if inputs.tuning:
        interval_options = {"confidence": statistics.confidence, "n_boot": statistics.n_boot}
        tables = {
            split: tuning_table(files["predictions"], files["evaluation"], **interval_options)
            for split, files in inputs.tuning.items()
        }
        tuned = {split: read_json(files["choice"])["chosen"] for split, files in inputs.tuning.items()}
        sections["tuning"] = tuning_section(tables, tuned)
        plot_tuning(tables, tuned, figure_paths["baseline_tuning"])
    report_dir = Path(out["markdown"]).parent
    figures = {
        name: (Path(path).relative_to(report_dir).as_posix(), *figure_text(captions_dir, name))
        for name, path in figure_paths.items()
    }
    text = render_report(
        provenance=meta,
        runs=list(run_names),
        datasets=datasets,
        settings=settings,
        summary=summary,
        latency=against_baseline,
        recommendation=None
        if recommendation is None
        else {"variant": recommendation.variant, "reason": recommendation.reason, "row": recommendation.row},
        sections=sections,
        figures=figures,
        interval_method=str(summary["interval_method"].iloc[0]),
        statistics={
            "adjustment_name": ADJUSTMENT_NAMES[statistics.adjustment],
            "power": statistics.power,
            "resolution_pp": statistics.resolution_pp,
            "resolution": resolution_summary(comparisons, statistics),
            "varying_architectures": _varying_architectures(runs),
        },
    )
    Path(out["markdown"]).write_text(text)
    return {"recommendation": None if recommendation is None else recommendation.variant, "recipes": chosen}
