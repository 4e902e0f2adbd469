"""One row per variant over all runs: mean accuracies with their intervals, costs and latencies.

Inputs are the files the workflow writes under a results folder:

- ``report/runs.csv``: one row per (run, variant) with the metrics of that run (:data:`RUNS_COLUMNS`);
- the per-sample predictions CSV each row names (``split``, ``sample_id``, ``correct``, …), relative
  to the results folder;
- ``report/latency.csv`` (optional): median latency per (variant, batch size).

Accuracy estimates and intervals come from the predictions, so the interval and the estimate always
describe the same samples. Paired comparisons with references (``vs_baseline_*``, ``vs_parent_*``)
are added by :mod:`prunequant.report.comparisons`, which makes every comparison of the report.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.errors import UserError
from prunequant.stats import accuracy_interval

__all__ = [
    "AGGREGATE_COLUMNS",
    "RUNS_COLUMNS",
    "aggregate",
    "fp32_torch_rows",
    "latency_columns",
    "load_latency",
    "load_runs",
    "read_predictions",
    "val_test_divergence",
    "with_method_columns",
]

PathLike = str | os.PathLike

RUNS_FILE = Path("report", "runs.csv")
LATENCY_FILE = Path("report", "latency.csv")

RUNS_COLUMNS = (
    "run",
    "seed",
    "model",
    "family",
    "method",
    "rate",
    "deployment",
    "precision",
    "runtime",
    "recipe",
    "variant",
    "accuracy",
    "loss",
    "val_accuracy",
    "val_loss",
    "n_test",
    "n_val",
    "parameters",
    "nonzero_parameters",
    "macs",
    "size_bytes",
    "weight_bytes",
    "agreement_pct",
    "mean_abs_logit_error",
    "max_abs_logit_error",
    "predictions",
)
_TEXT_COLUMNS = (
    "run",
    "model",
    "family",
    "method",
    "deployment",
    "precision",
    "runtime",
    "recipe",
    "variant",
)
_DESCRIPTIVE_COLUMNS = (
    "variant",
    "model",
    "family",
    "method",
    "rate",
    "deployment",
    "precision",
    "runtime",
    "recipe",
)
# Means over runs. Sizes and counts can differ between seeds (a global pruning criterion keeps
# different channels), so they are averaged too.
_MEAN_COLUMNS = (
    "loss",
    "val_loss",
    "n_test",
    "n_val",
    "parameters",
    "nonzero_parameters",
    "macs",
    "size_bytes",
    "weight_bytes",
    "agreement_pct",
    "mean_abs_logit_error",
)
_LATENCY_BATCHES = (1, 64)  # always present as columns (NaN when not measured): recommend reads them

AGGREGATE_COLUMNS = (
    *_DESCRIPTIVE_COLUMNS,
    "n_runs",
    "runs",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "interval_method",
    "confidence",
    "val_accuracy",
    "val_accuracy_low",
    "val_accuracy_high",
    "val_interval_method",
    *_MEAN_COLUMNS,
    "max_abs_logit_error",
)


def load_runs(results_dir: PathLike) -> pd.DataFrame:
    """``<results_dir>/report/runs.csv`` as a table, with empty text fields as "" (not NaN)."""
    path = Path(results_dir) / RUNS_FILE
    if not path.is_file():
        raise UserError(
            f"{path}: not found; pass a results folder the workflow finished (it holds {RUNS_FILE})"
        )
    runs = pd.read_csv(path, dtype={column: str for column in _TEXT_COLUMNS}, keep_default_na=True)
    missing = [column for column in RUNS_COLUMNS if column not in runs.columns]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)}; rerun the report rule to rewrite it"
        )
    if runs.empty:
        raise UserError(f"{path}: no rows; rerun the workflow")
    runs[list(_TEXT_COLUMNS)] = runs[list(_TEXT_COLUMNS)].fillna("")
    duplicated = runs.duplicated(["run", "variant"])
    if duplicated.any():
        first = runs[duplicated].iloc[0]
        raise UserError(
            f"{path}: run {first['run']} lists variant {first['variant']} twice; rerun the report rule"
        )
    return runs


def load_latency(results_dir: PathLike) -> pd.DataFrame:
    """Latency columns per variant from ``report/latency.csv``; an empty table when it is absent.

    Columns: ``variant`` and, per batch size b, ``latency_batch<b>_ms`` (median), ``_low_ms``,
    ``_high_ms``, ``speedup_batch<b>`` and ``speedup_batch<b>_verdict``.
    """
    path = Path(results_dir) / LATENCY_FILE
    if not path.is_file():
        return pd.DataFrame({"variant": pd.Series(dtype=str)})
    latency = pd.read_csv(path)
    needed = ("variant", "batch_size", "median_ms", "low_ms", "high_ms", "speedup", "speedup_verdict")
    missing = [column for column in needed if column not in latency.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; rerun the latency jobs")
    wide = pd.DataFrame({"variant": sorted(latency["variant"].unique())}).set_index("variant")
    for batch, rows in latency.groupby("batch_size"):
        rows = rows.set_index("variant")
        if rows.index.duplicated().any():
            raise UserError(f"{path}: a variant has two rows at batch size {batch}; rerun the latency jobs")
        sources = ("median_ms", "low_ms", "high_ms", "speedup", "speedup_verdict")
        for column, source in zip(latency_columns(int(batch)), sources, strict=True):
            wide[column] = rows[source]
    return wide.reset_index()


def read_predictions(path: PathLike) -> pd.DataFrame:
    """A predictions CSV with ``correct`` as booleans; raises UserError when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: predictions file not found; rerun the evaluate job that writes it")
    frame = pd.read_csv(path, dtype={"split": str, "sample_id": str})
    missing = [column for column in ("split", "sample_id", "correct") if column not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; rerun the evaluate job")
    frame["correct"] = frame["correct"].astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))
    return frame


def aggregate(
    runs: pd.DataFrame, results_dir: PathLike, *, confidence: float, n_boot: int, seed: int = 0
) -> pd.DataFrame:
    """One row per variant (:data:`AGGREGATE_COLUMNS`, then the latency columns of :func:`load_latency`).

    ``accuracy`` and ``val_accuracy`` are means over runs with ``confidence`` intervals (t over seeds
    when there are several runs, else a bootstrap over samples; ``interval_method`` says which).
    """
    results_dir = Path(results_dir)
    correct = _correct_by_variant(runs, results_dir)
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        test = {run: correct[variant, run]["test"] for run in group["run"]}
        val = {run: correct[variant, run]["val"] for run in group["run"]}
        test_interval = accuracy_interval(test, confidence=confidence, n_boot=n_boot, seed=seed)
        val_interval = accuracy_interval(
            val, confidence=confidence, n_boot=n_boot, seed=seed, split="validation"
        )
        first = group.iloc[0]
        row = {column: first[column] for column in _DESCRIPTIVE_COLUMNS}
        row |= {
            "n_runs": len(group),
            "runs": ";".join(group["run"]),
            "accuracy": test_interval.estimate,
            "accuracy_low": test_interval.low,
            "accuracy_high": test_interval.high,
            "interval_method": test_interval.method,
            "confidence": confidence,
            "val_accuracy": val_interval.estimate,
            "val_accuracy_low": val_interval.low,
            "val_accuracy_high": val_interval.high,
            "val_interval_method": val_interval.method,
        }
        row |= {column: pd.to_numeric(group[column], errors="coerce").mean() for column in _MEAN_COLUMNS}
        row["max_abs_logit_error"] = pd.to_numeric(group["max_abs_logit_error"], errors="coerce").max()
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))
    table = table.merge(load_latency(results_dir), on="variant", how="left")
    for batch in _LATENCY_BATCHES:
        for column in latency_columns(batch):
            if column not in table.columns:
                table[column] = np.nan
    return table


def latency_columns(batch_size: int) -> tuple[str, ...]:
    """The latency columns :func:`aggregate` adds for one batch size."""
    return (
        f"latency_batch{batch_size}_ms",
        f"latency_batch{batch_size}_low_ms",
        f"latency_batch{batch_size}_high_ms",
        f"speedup_batch{batch_size}",
        f"speedup_batch{batch_size}_verdict",
    )


def val_test_divergence(table: pd.DataFrame, threshold_pp: float = 1.0) -> pd.DataFrame:
    """Variants whose validation and test differences from their baseline point opposite ways.

    Both differences are mean accuracy minus the ``vs_baseline_reference`` variant's, in points. A
    variant is listed when the two have opposite signs and lie more than ``threshold_pp`` apart:
    then a choice made on validation may not carry over to the test split, and the report should
    warn. Columns: ``variant``, ``val_diff_pp``, ``test_diff_pp``, ``gap_pp``.
    """
    by_name = table.set_index("variant")
    rows = []
    for variant, reference in by_name["vs_baseline_reference"].items():
        if not isinstance(reference, str) or reference not in by_name.index or reference == variant:
            continue
        val_diff = by_name.at[variant, "val_accuracy"] - by_name.at[reference, "val_accuracy"]
        test_diff = by_name.at[variant, "accuracy"] - by_name.at[reference, "accuracy"]
        gap = abs(val_diff - test_diff)
        if val_diff * test_diff < 0 and gap > threshold_pp:
            rows.append(
                {"variant": variant, "val_diff_pp": val_diff, "test_diff_pp": test_diff, "gap_pp": gap}
            )
    return pd.DataFrame(rows, columns=["variant", "val_diff_pp", "test_diff_pp", "gap_pp"])


def _correct_by_variant(
    runs: pd.DataFrame, results_dir: Path
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per (variant, run): the boolean ``correct`` arrays of the val and test splits.

    Each file is read once. Every variant of a run must list the same sample ids in the same order,
    since paired comparisons match samples by position.
    """
    correct, sample_ids = {}, {}
    for record in runs[["variant", "run", "predictions"]].itertuples(index=False):
        if not record.predictions:
            raise UserError(f"runs.csv: run {record.run}, variant {record.variant} names no predictions file")
        path = results_dir / record.predictions
        frame = read_predictions(path)
        splits = {}
        for split in ("val", "test"):
            rows = frame[frame["split"] == split]
            if rows.empty:
                raise UserError(f"{path}: no {split!r} rows; rerun the evaluate job")
            ids = tuple(rows["sample_id"])
            expected = sample_ids.setdefault((record.run, split), (ids, path))
            if expected[0] != ids:
                raise UserError(
                    f"{path}: {split} samples differ from those of {expected[1]} (same run {record.run}); "
                    "rerun the evaluate jobs of this run"
                )
            splits[split] = rows["correct"].to_numpy(dtype=bool)
        correct[record.variant, record.run] = splits
    return correct


_METHOD_COLUMNS = ("criterion", "scope", "schedule", "steps", "spacing", "max_drop_pp")


def with_method_columns(summary: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with each variant's method settings (criterion, scope, schedule, …) and its
    storage sizes (mean over runs) from ``runs``: what the study sections pair variants by."""
    first = runs.drop_duplicates("variant").set_index("variant")
    for column in _METHOD_COLUMNS:
        summary[column] = summary["variant"].map(first[column]) if column in first else ""
    for column in ("criterion", "scope", "schedule", "spacing"):
        summary[column] = summary[column].fillna("")
    # Costs only some stages record: storage formats of sparse models, the graph's peak activations.
    storage = [
        column
        for column in first.columns
        if column.startswith("storage_") or column == "peak_activation_bytes"
    ]
    for column in storage:
        summary[column] = summary["variant"].map(runs.groupby("variant")[column].mean())
    return summary


def fp32_torch_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The variants deployed as trained: fp32 in PyTorch (what the pruning study compares)."""
    return summary[summary["deployment"] == "fp32_torch"]
