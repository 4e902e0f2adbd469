"""Every comparison the report makes, as one table: which variant against which reference, for
which study question, with the per-run differences, the run-level interval, raw and adjusted p,
the smallest difference the runs could have detected, and the verdict.

The comparisons of one report are a family: their p-values are adjusted together
(``report.multiple_comparisons``), and a verdict is *better* or *worse* only when the adjusted p is
below ``1 − confidence``. The raw interval is kept beside it, so a reader sees both. ``summary.csv``'s
verdict columns and every table of the report are read from this table (``comparisons.csv``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.stats import (
    SINGLE_RUN,
    adjust_p_values,
    min_detectable_difference,
    paired_comparison,
    runs_to_resolve,
    verdict,
)
from prunequant.variants import parse_model

__all__ = [
    "COMPARISON_COLUMNS",
    "QUESTIONS",
    "Predictions",
    "StatisticsSettings",
    "compare_all",
    "planned_comparisons",
    "resolution_summary",
    "summary_verdicts",
    "trained_on_labels",
]

PathLike = str | os.PathLike
BASELINE = "baseline/fp32_torch"

# Every study question: its key in comparisons.csv and what it asks, variant against reference.
QUESTIONS = {
    "vs_baseline": "each compressed variant against the baseline in the same deployment",
    "vs_parent": "each int8 variant against its fp32 parent in ONNX Runtime",
    "tflm_vs_onnxruntime": "each int8 recipe in TFLM against the same recipe in ONNX Runtime",
    "criterion_vs_random": "each pruning criterion against a random choice at the same rate",
    "global_vs_layer": "global ranking against layer-wise ranking, same criterion and rate",
    "iterative_vs_oneshot": "an iterative schedule against one shot, same criterion, scope and rate",
    "sparse_vs_structured": "weight pruning against the channel-pruned model closest in non-zero parameters",
    "pruned_vs_scratch": "pruned and fine-tuned against the same architecture trained from scratch",
    "distilled_vs_plain": "a model trained against a teacher against its twin trained on labels alone",
    "distilled_scratch_vs_pruned": "a distilled student from scratch against the pruned and fine-tuned model",
    "recommended_vs_baseline": "the recommended variant against the fp32 baseline",
}

COMPARISON_COLUMNS = (
    "question",
    "variant",
    "reference",
    "n_runs",
    "n_units",
    "run_differences_pp",
    "estimate_pp",
    "low",
    "high",
    "confidence",
    "method",
    "p",
    "p_adjusted",
    "adjustment",
    "min_detectable_pp",
    "run_spread_pp",
    "identical",
    "verdict",
)


class StatisticsSettings:
    """The report's statistics settings (``report:`` keys), read once."""

    def __init__(self, settings: Mapping):
        self.confidence = float(settings["confidence"])
        self.n_boot = int(settings["bootstrap_samples"])
        self.adjustment = str(settings["multiple_comparisons"])
        self.power = float(settings["power"])
        self.resolution_pp = float(settings["resolution_pp"])

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence


class Predictions:
    """Per-sample correctness of every (run, variant), read once from the predictions files."""

    def __init__(self, runs: pd.DataFrame, results_dir: PathLike):
        self._paths = {
            (row.run, row.variant): Path(results_dir) / row.predictions for row in runs.itertuples()
        }
        self._read = cache(self._load)

    def _load(self, path: Path) -> pd.DataFrame:
        return pd.read_csv(path, dtype={"sample_id": str})

    def table(self, run: str, variant: str) -> pd.DataFrame:
        return self._read(self._paths[(run, variant)])

    def _column(self, variant: str, column: str, split: str) -> dict[str, np.ndarray]:
        """Run → one column of ``split``'s rows, for every run of ``variant``."""
        result = {}
        for (run, name), path in self._paths.items():
            if name == variant:
                frame = self._read(path)
                result[run] = frame.loc[frame["split"] == split, column].to_numpy()
        return result

    def correct(self, variant: str, split: str = "test") -> dict[str, np.ndarray]:
        """Run → boolean array of correct predictions on ``split``, for every run of ``variant``."""
        return {run: values.astype(bool) for run, values in self._column(variant, "correct", split).items()}

    def test_sets(self, variant: str) -> dict[str, tuple[str, ...]]:
        """Run → the test sample ids it scored: runs with equal ids share a test set."""
        return {run: tuple(ids) for run, ids in self._column(variant, "sample_id", "test").items()}

    def same_predictions(self, variant: str, reference: str, split: str = "test") -> bool:
        """Whether both predicted the same class for every ``split`` sample in every run both have.

        A zero difference with a zero-width interval says only that accuracy matched; this says
        the two variants behaved as one model (e.g. global and layer-wise ranking of a model
        with a single prunable block keep the same channels).
        """
        mine = self._column(variant, "prediction", split)
        theirs = self._column(reference, "prediction", split)
        common = [run for run in mine if run in theirs]
        return bool(common) and all(np.array_equal(mine[run], theirs[run]) for run in common)


def trained_on_labels(summary: pd.DataFrame) -> pd.DataFrame:
    """The variants whose models were trained without a teacher: what the pruning study compares."""
    return summary[[not parse_model(model).distill for model in summary["model"]]]


def planned_comparisons(
    summary: pd.DataFrame, recommended: str | None = None, recipe_twins: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """(question, variant, reference) of every comparison the report makes, from the variants present.

    ``recipe_twins`` maps a distilled QAT recipe to the recipe it equals without its teacher.
    """
    rows: list[tuple[str, str, str]] = []
    present = set(summary["variant"])

    def add(question: str, frame: pd.DataFrame, reference_of: Callable[[dict], str | None]) -> None:
        for row in frame.to_dict("records"):
            reference = reference_of(row)
            if reference is not None and reference in present and reference != row["variant"]:
                rows.append((question, row["variant"], reference))

    add("vs_baseline", summary[summary["model"] != "baseline"], lambda r: f"baseline/{r['deployment']}")
    add("vs_parent", summary[summary["precision"] == "int8"], lambda r: f"{r['model']}/fp32_onnxruntime")
    add(
        "tflm_vs_onnxruntime",
        summary[summary["deployment"].str.endswith("_tflm")],
        lambda r: f"{r['model']}/int8-{r['recipe']}_onnxruntime",
    )
    # The pruning questions compare methods trained on labels alone; distillation has its own.
    plain = trained_on_labels(summary)
    fp32 = plain[plain["deployment"] == "fp32_torch"]
    structured = fp32[fp32["family"] == "structured"]
    oneshot_layer = structured[(structured["scope"] == "layer") & (structured["schedule"] == "oneshot")]
    random_at = _variant_by_rate(oneshot_layer[oneshot_layer["criterion"] == "random"])
    add(
        "criterion_vs_random",
        oneshot_layer[oneshot_layer["criterion"] != "random"],
        lambda r: random_at.get(r["rate"]),
    )

    def same_point(row: dict, **changes: str) -> str | None:
        for candidate in structured.to_dict("records"):
            if (
                candidate["rate"] == row["rate"]
                and candidate["criterion"] == row["criterion"]
                and all(candidate[key] == value for key, value in changes.items())
            ):
                return candidate["variant"]
        return None

    add(
        "global_vs_layer",
        structured[(structured["scope"] == "global") & (structured["schedule"] == "oneshot")],
        lambda r: same_point(r, scope="layer", schedule="oneshot"),
    )
    add(
        "iterative_vs_oneshot",
        structured[structured["schedule"] == "iterative"],
        lambda r: same_point(r, scope=r["scope"], schedule="oneshot"),
    )
    l1_oneshot = oneshot_layer[oneshot_layer["criterion"] == "l1"]
    if len(l1_oneshot):

        def nearest_in_nonzero(row: dict) -> str:
            distances = (l1_oneshot["nonzero_parameters"] - row["nonzero_parameters"]).abs()
            return str(l1_oneshot.loc[distances.idxmin(), "variant"])

        add("sparse_vs_structured", fp32[fp32["family"] == "unstructured"], nearest_in_nonzero)
    # Read as "pruned minus scratch": the pruned model is the variant, its from-scratch twin the reference.
    scratch_at = _variant_by_rate(fp32[fp32["family"] == "scratch"])
    add("pruned_vs_scratch", l1_oneshot, lambda r: scratch_at.get(r["rate"]))
    _add_distillation(add, summary, recipe_twins or {}, pruned_at=_variant_by_rate(l1_oneshot))
    if recommended is not None and recommended != BASELINE:
        rows.append(("recommended_vs_baseline", recommended, BASELINE))
    return pd.DataFrame(rows, columns=["question", "variant", "reference"])


def compare_all(
    planned: pd.DataFrame, predictions: Predictions, settings: StatisticsSettings
) -> pd.DataFrame:
    """One row per planned comparison (:data:`COMPARISON_COLUMNS`), the family adjusted together.

    A pair (variant, reference) asked by two questions is computed once and counted once in the
    family. Comparisons over one run are kept (with their sample-level interval) but are no method
    verdict, so they are left out of the family.
    """
    results = {}
    for pair in dict.fromkeys(zip(planned["variant"], planned["reference"], strict=True)):
        variant, reference = pair
        result = paired_comparison(
            predictions.correct(variant),
            predictions.correct(reference),
            confidence=settings.confidence,
            n_boot=settings.n_boot,
            test_sets=predictions.test_sets(variant),
        )
        results[pair] = (result, predictions.same_predictions(variant, reference))
    family = [pair for pair, (result, _) in results.items() if result.is_method_comparison]
    family_p = adjust_p_values([results[pair][0].p_value for pair in family], settings.adjustment)
    adjusted = dict(zip(family, family_p, strict=True))
    rows = []
    for question, variant, reference in planned.itertuples(index=False):
        result, identical = results[variant, reference]
        p_adjusted = adjusted.get((variant, reference), np.nan)
        rows.append(
            {
                "question": question,
                "variant": variant,
                "reference": reference,
                "n_runs": result.n_runs,
                "n_units": result.n_units,
                "run_differences_pp": ";".join(f"{value:.4f}" for value in result.run_differences),
                "estimate_pp": result.difference_pp,
                "low": result.low,
                "high": result.high,
                "confidence": settings.confidence,
                "method": result.method,
                "p": result.p_value,
                "p_adjusted": p_adjusted,
                "adjustment": settings.adjustment if result.is_method_comparison else "",
                "min_detectable_pp": min_detectable_difference(
                    result, confidence=settings.confidence, power=settings.power
                ),
                "run_spread_pp": result.standard_error * np.sqrt(result.n_units),
                "identical": identical,
                "verdict": (
                    verdict(result.difference_pp, p_adjusted, alpha=settings.alpha)
                    if result.is_method_comparison
                    else SINGLE_RUN
                ),
            }
        )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def summary_verdicts(summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``vs_baseline_*`` and ``vs_parent_*`` columns taken from ``comparisons``."""
    summary = summary.copy()
    for question in ("vs_baseline", "vs_parent"):
        rows = comparisons[comparisons["question"] == question].set_index("variant")
        for field, column in SUMMARY_FIELDS.items():
            values = summary["variant"].map(rows[column])
            if field in ("reference", "verdict"):
                values = values.fillna("")
            summary[f"{question}_{field}"] = values
    return summary


# Summary column suffix → comparisons.csv column.
SUMMARY_FIELDS = {
    "reference": "reference",
    "diff_pp": "estimate_pp",
    "low": "low",
    "high": "high",
    "p": "p",
    "p_adjusted": "p_adjusted",
    "min_detectable_pp": "min_detectable_pp",
    "identical": "identical",
    "verdict": "verdict",
}


def resolution_summary(comparisons: pd.DataFrame, settings: StatisticsSettings) -> dict:
    """What this study's runs can resolve: for the report's header.

    ``median_min_detectable_pp`` and ``median_spread_pp`` over the family's comparisons;
    ``runs_for_resolution``: independent runs that would detect ``settings.resolution_pp`` with
    ``settings.power`` at the median spread; ``undecided_coarse``: comparisons without a verdict
    whose detectable difference is above that resolution.
    """
    family = comparisons.drop_duplicates(["variant", "reference"])
    family = family[family["n_units"] >= 2]
    if family.empty:
        return {"n_family": 0}
    spread = float(family["run_spread_pp"].median())
    undecided = family[
        (family["verdict"] == "no detectable difference")
        & (family["min_detectable_pp"] > settings.resolution_pp)
        & ~family["identical"].astype(bool)
    ]
    return {
        "n_family": len(family),
        "n_units": int(family["n_units"].max()),
        "median_min_detectable_pp": float(family["min_detectable_pp"].median()),
        "median_spread_pp": spread,
        "runs_for_resolution": runs_to_resolve(
            spread, settings.resolution_pp, confidence=settings.confidence, power=settings.power
        ),
        "undecided_coarse": len(undecided),
        "raw_only": int(
            ((family["p"] < settings.alpha) & (family["verdict"] == "no detectable difference")).sum()
        ),
    }


def _add_distillation(add, summary: pd.DataFrame, recipe_twins: Mapping[str, str], *, pruned_at) -> None:
    """Each distilled variant against its undistilled twin (same architecture, epochs and
    deployment), and each distilled student from scratch against the pruned model of its rate."""

    def twin(row: dict) -> str | None:
        model = parse_model(row["model"])
        if model.distill:
            return f"{model.undistilled}/{row['deployment']}"
        if row.get("recipe") in recipe_twins:  # a distilled QAT recipe of an undistilled model
            return f"{row['model']}/int8-{recipe_twins[row['recipe']]}_onnxruntime"
        return None

    distilled = summary[[twin(row) is not None for row in summary.to_dict("records")]]
    add("distilled_vs_plain", distilled, twin)
    students = distilled[(distilled["family"] == "scratch") & (distilled["deployment"] == "fp32_torch")]
    add("distilled_scratch_vs_pruned", students, lambda r: pruned_at.get(r["rate"]))


def _variant_by_rate(frame: pd.DataFrame) -> dict[float, str]:
    return dict(zip(frame["rate"], frame["variant"], strict=True))
