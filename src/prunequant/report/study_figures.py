"""Figures of the pruning and quantization studies, drawn from the per-variant summary.

Every accuracy is drawn with its interval as an error bar; every figure labels its axes
with units and keeps one colour per method family, so figures read the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prunequant.report.aggregate import fp32_torch_rows

__all__ = [
    "FAMILY_COLOURS",
    "plot_criteria",
    "plot_schedules_and_scopes",
    "plot_structured_vs_unstructured",
    "plot_pruned_vs_scratch",
    "plot_sensitivity",
    "plot_quantization_sensitivity",
    "plot_training_curves",
    "plot_confusion",
    "plot_tuning",
    "empty_figure",
]

PathLike = str | os.PathLike
DPI = 100
FAMILY_COLOURS = {
    "baseline": "black",
    "structured": "tab:blue",
    "sensitivity": "tab:cyan",
    "unstructured": "tab:orange",
    "scratch": "tab:gray",
    "quantization": "tab:green",
    "both": "tab:purple",
}
_CYCLE = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _save(fig: Figure, path: PathLike) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def empty_figure(path: PathLike, message: str) -> None:
    """A figure that says why there is nothing to draw (the config ran no such variant)."""
    fig = Figure(figsize=(6, 1.5))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    _save(fig, path)


def _errors(rows: pd.DataFrame) -> np.ndarray:
    return np.vstack([rows["accuracy"] - rows["accuracy_low"], rows["accuracy_high"] - rows["accuracy"]])


def _grouped_bars(ax, table: pd.DataFrame, group: str, series: str, *, baseline: pd.Series | None) -> None:
    """Bars of test accuracy with intervals: one cluster per ``group`` value, one bar per ``series``."""
    groups = sorted(table[group].unique())
    names = list(dict.fromkeys(table[series]))
    width = 0.8 / max(len(names), 1)
    for index, name in enumerate(names):
        rows = table[table[series] == name].set_index(group).reindex(groups)
        positions = np.arange(len(groups)) + (index - (len(names) - 1) / 2) * width
        present = rows["accuracy"].notna().to_numpy()
        ax.bar(
            positions[present],
            rows["accuracy"][present],
            width,
            yerr=_errors(rows[present]),
            capsize=3,
            label=name,
            color=_CYCLE[index % len(_CYCLE)],
        )
    if baseline is not None:
        ax.axhline(baseline["accuracy"], color="black", linestyle="--", linewidth=1, label="baseline")
        ax.axhspan(baseline["accuracy_low"], baseline["accuracy_high"], color="black", alpha=0.08)
    ax.set_xticks(np.arange(len(groups)), [f"{value:g}" for value in groups])
    low = (table["accuracy_low"].min() if len(table) else 0) - 2
    ax.set_ylim(max(low, 0), min(100, max(table["accuracy_high"].max(), 0) + 2) if len(table) else 100)
    ax.set_ylabel("test accuracy (%), 95% interval")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, ncols=2)


def _baseline(summary: pd.DataFrame) -> pd.Series | None:
    rows = fp32_torch_rows(summary)[fp32_torch_rows(summary)["family"] == "baseline"]
    return rows.iloc[0] if len(rows) else None


def plot_criteria(summary: pd.DataFrame, path: PathLike) -> bool:
    """Criteria side by side at each rate they share (layer scope, one shot). False if none."""
    rows = fp32_torch_rows(summary)
    rows = rows[
        (rows["family"] == "structured") & (rows["scope"] == "layer") & (rows["schedule"] == "oneshot")
    ]
    shared = rows.groupby("rate")["criterion"].nunique()
    rows = rows[rows["rate"].isin(shared[shared > 1].index)]
    if rows.empty:
        empty_figure(path, "No rate was pruned with more than one criterion.")
        return False
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    _grouped_bars(ax, rows, "rate", "criterion", baseline=_baseline(summary))
    ax.set_xlabel("share of channels removed per block")
    ax.set_title("Channel-pruning criteria (layer-wise, one shot, fine-tuned); random is the floor")
    _save(fig, path)
    return True


def plot_schedules_and_scopes(summary: pd.DataFrame, path: PathLike) -> bool:
    """One criterion, its scopes and schedules at each rate they share."""
    rows = fp32_torch_rows(summary)
    rows = rows[rows["family"] == "structured"]
    shared = rows.groupby(["criterion", "rate"])["method"].nunique()
    shared = shared[shared > 1]
    if shared.empty:
        empty_figure(path, "No criterion was run with more than one scope or schedule at one rate.")
        return False
    keys = set(shared.index)
    rows = rows[[(c, r) in keys for c, r in zip(rows["criterion"], rows["rate"], strict=True)]]
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    _grouped_bars(ax, rows, "rate", "method", baseline=_baseline(summary))
    ax.set_xlabel("final share of channels removed")
    ax.set_title("Layer vs global scope, one-shot vs iterative (same fine-tuning epochs)")
    _save(fig, path)
    return True


def _scatter(ax, rows: pd.DataFrame, x: str, *, label: str, colour: str, marker: str) -> None:
    ax.errorbar(
        rows[x],
        rows["accuracy"],
        yerr=_errors(rows),
        fmt=marker,
        color=colour,
        capsize=3,
        label=label,
        linestyle="-" if len(rows) > 1 else "none",
    )


def plot_structured_vs_unstructured(summary: pd.DataFrame, path: PathLike) -> bool:
    """Accuracy against non-zero parameters, and against stored bytes in each storage format.

    Unstructured rows of ``summary`` carry ``storage_<format>`` columns: their weight bytes as
    dense fp32, CSR and bitmask, with fp32 and int8 values.
    """
    rows = fp32_torch_rows(summary)
    structured = rows[
        rows["family"].isin(["baseline", "structured"]) & rows["schedule"].isin(["", "oneshot"])
    ]
    structured = structured[
        structured["criterion"].isin(["", "l1"]) & structured["scope"].isin(["", "layer"])
    ]
    unstructured = rows[rows["family"] == "unstructured"]
    if unstructured.empty:
        empty_figure(path, "No unstructured (weight) pruning was configured.")
        return False
    fig = Figure(figsize=(13, 4.8))
    left, right = fig.subplots(1, 2)
    for ax, x, label in (
        (left, "nonzero_parameters", "non-zero parameters"),
        (right, "weight_bytes", "stored weight bytes"),
    ):
        _scatter(
            ax, structured.sort_values(x), x, label="structured (l1, layer)", colour="tab:blue", marker="o"
        )
        if x == "nonzero_parameters":
            _scatter(
                ax, unstructured.sort_values(x), x, label="unstructured", colour="tab:orange", marker="s"
            )
        else:
            merged = unstructured  # the summary carries each storage format's bytes
            styles = {
                "storage_dense_fp32": ("s", "unstructured, dense fp32"),
                "storage_csr_fp32": ("D", "unstructured, CSR fp32"),
                "storage_bitmask_fp32": ("v", "unstructured, bitmask fp32"),
                "storage_csr_int8": ("P", "unstructured, CSR int8"),
                "storage_bitmask_int8": ("X", "unstructured, bitmask int8"),
            }
            for index, (column, (marker, name)) in enumerate(styles.items()):
                if column in merged:
                    _scatter(
                        ax,
                        merged.assign(weight_bytes=merged[column]).sort_values("weight_bytes"),
                        "weight_bytes",
                        label=name,
                        colour=_CYCLE[(index + 1) % len(_CYCLE)],
                        marker=marker,
                    )
        ax.set_xlabel(f"{label} (count)" if x == "nonzero_parameters" else f"{label} (bytes)")
        ax.set_ylabel("test accuracy (%), 95% interval")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_title("At equal non-zero parameters")
    right.set_title("At equal stored bytes (indices cost bytes too)")
    _save(fig, path)
    return True


def plot_pruned_vs_scratch(summary: pd.DataFrame, path: PathLike) -> bool:
    """Prune + fine-tune against the same architecture trained from scratch, per rate."""
    rows = fp32_torch_rows(summary)
    scratch = rows[rows["family"] == "scratch"]
    pruned = rows[
        (rows["family"] == "structured")
        & (rows["criterion"] == "l1")
        & (rows["scope"] == "layer")
        & (rows["schedule"] == "oneshot")
    ]
    if scratch.empty or pruned.empty:
        empty_figure(path, "Needs l1/layer/one-shot pruning and from-scratch controls at shared rates.")
        return False
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    _scatter(
        ax, pruned.sort_values("rate"), "rate", label="pruned + fine-tuned", colour="tab:blue", marker="o"
    )
    _scatter(
        ax,
        scratch.sort_values("rate"),
        "rate",
        label="same widths, from scratch",
        colour="tab:gray",
        marker="s",
    )
    baseline = _baseline(summary)
    if baseline is not None:
        ax.axhline(baseline["accuracy"], color="black", linestyle="--", linewidth=1, label="baseline")
    ax.set_xlabel("share of channels removed per block")
    ax.set_ylabel("test accuracy (%), 95% interval")
    ax.set_title("Does pruning beat training the small model from scratch?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_sensitivity(curves: pd.DataFrame, path: PathLike) -> bool:
    """Validation accuracy with one block pruned (no fine-tuning), mean over runs, per block."""
    if curves.empty:
        empty_figure(path, "No sensitivity analysis was configured.")
        return False
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    for index, (block, rows) in enumerate(curves.groupby("block")):
        stats = rows.groupby("rate")["val_accuracy"].agg(["mean", "min", "max"]).reset_index()
        colour = _CYCLE[index % len(_CYCLE)]
        ax.plot(stats["rate"], stats["mean"], marker="o", color=colour, label=block)
        ax.fill_between(stats["rate"], stats["min"], stats["max"], color=colour, alpha=0.15)
    ax.set_xlabel("share of the block's channels removed (no fine-tuning)")
    ax.set_ylabel("validation accuracy (%), mean and range over runs")
    ax.set_title("Per-block pruning sensitivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_quantization_sensitivity(layers: pd.DataFrame, path: PathLike) -> bool:
    """Validation drop when only one layer is int8, per layer and model; float-kept layers hatched."""
    if layers.empty:
        empty_figure(path, "No partial-quantization recipe was configured.")
        return False
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    models = list(dict.fromkeys(layers["model"]))
    nodes = list(dict.fromkeys(layers["node"]))
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        rows = (
            layers[layers["model"] == model]
            .groupby("node")
            .agg(
                drop_pp=("drop_pp", "mean"),
                low=("drop_pp", "min"),
                high=("drop_pp", "max"),
                kept=("kept_float", "max"),
            )
        )
        rows = rows.reindex(nodes)
        positions = np.arange(len(nodes)) + (index - (len(models) - 1) / 2) * width
        bars = ax.bar(
            positions,
            rows["drop_pp"],
            width,
            yerr=np.vstack([rows["drop_pp"] - rows["low"], rows["high"] - rows["drop_pp"]]),
            capsize=3,
            color=_CYCLE[index % len(_CYCLE)],
            label=model,
        )
        for bar, kept in zip(bars, rows["kept"].fillna(False), strict=True):
            if kept:
                bar.set_hatch("//")
    ax.set_xticks(np.arange(len(nodes)), nodes, rotation=20, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("validation drop when only this layer is int8 (pp)")
    ax.set_title("Partial quantization: per-layer sensitivity (hatched = kept in float in some run)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


_CURVE_PANELS = (
    ("baseline and from scratch", ("baseline", "scratch")),
    ("channel pruning (fine-tuning)", ("structured", "sensitivity")),
    ("weight pruning (fine-tuning)", ("unstructured",)),
    ("quantization-aware training", ("qat",)),
)


def plot_training_curves(histories: pd.DataFrame, families: Mapping[str, str], path: PathLike) -> None:
    """Validation accuracy per epoch: mean over runs with a min–max band, one panel per family.

    ``histories`` has columns run, model, epoch, val_accuracy; ``families`` maps a history's
    model key to its family (QAT histories are keyed "model/int8-recipe", family "qat").
    """
    fig = Figure(figsize=(14, 8), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (title, wanted) in zip(axes, _CURVE_PANELS, strict=True):
        keys = [key for key, family in families.items() if family in wanted]
        for index, key in enumerate(keys):
            rows = histories[histories["model"] == key]
            stats = rows.groupby("epoch")["val_accuracy"].agg(["mean", "min", "max"]).reset_index()
            colour = _CYCLE[index % len(_CYCLE)] if key != "baseline" else "black"
            marker = "o" if len(stats) < 10 else None  # a run of one or two epochs still shows
            ax.plot(
                stats["epoch"],
                stats["mean"],
                color=colour,
                label=key,
                linewidth=1.2,
                marker=marker,
                markersize=3,
            )
            ax.fill_between(stats["epoch"], stats["min"], stats["max"], color=colour, alpha=0.12)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=7, ncols=2, loc="lower right")
        else:
            ax.text(0.5, 0.5, "not configured", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Training curves: mean over runs, band = range over runs")
    _save(fig, path)


def plot_confusion(matrices: Mapping[str, np.ndarray], classes: list[str], path: PathLike) -> None:
    """Test confusion matrices (counts pooled over runs), one panel per named variant."""
    fig = Figure(figsize=(6 * len(matrices), 5))
    axes = np.atleast_1d(fig.subplots(1, len(matrices)))
    for ax, (title, matrix) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, fontsize=10)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    j,
                    i,
                    int(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if count > matrix.max() / 2 else "black",
                )
        fig.colorbar(image, ax=ax, shrink=0.8, label="test samples (all runs)")
    _save(fig, path)


def plot_tuning(tables: Mapping[str, pd.DataFrame], chosen: Mapping[str, str], path: PathLike) -> None:
    """Baseline-tuning grid: validation accuracy against learning rate, one line per batch size.

    With a single learning rate, batch size is the x axis instead. One panel per data split;
    error bars are each candidate's interval, the chosen one is ringed; points sharing an x
    value are nudged apart so their bars stay readable.
    """
    first = next(iter(tables.values()))
    x, series = ("lr", "batch_size") if first["lr"].nunique() > 1 else ("batch_size", "lr")
    labels = {"lr": "initial learning rate", "batch_size": "batch size"}
    fig = Figure(figsize=(8.5, 3.6 * len(tables)), layout="constrained")
    for index, (split, grid) in enumerate(tables.items()):
        ax = fig.add_subplot(len(tables), 1, index + 1)
        groups = list(grid.groupby(series))
        for position, (value, rows) in enumerate(groups):
            colour = _CYCLE[position % len(_CYCLE)]
            rows = rows.sort_values(x)
            nudge = 1.06 ** (position - (len(groups) - 1) / 2)
            low, mean, high = (rows[f"val_accuracy{end}"] for end in ("_low", "", "_high"))
            ax.errorbar(
                rows[x] * nudge, mean, yerr=np.vstack([mean - low, high - mean]), marker="o", capsize=3,
                color=colour, label=f"{labels[series]} {value:g}",
            )  # fmt: skip
            best = rows[rows["candidate"] == chosen[split]]
            ax.scatter(
                best[x] * nudge, best["val_accuracy"], s=220, facecolors="none", edgecolors="black",
                linewidths=1.5, zorder=3, label=f"chosen: {chosen[split]}" if len(best) else None,
            )  # fmt: skip
        ax.set_xscale("log", base=2 if x == "batch_size" else 10)
        ax.set_xticks(sorted(grid[x].unique()), [f"{value:g}" for value in sorted(grid[x].unique())])
        ax.minorticks_off()
        ax.set_xlabel(f"{labels[x]} (log scale)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(
            f"split {split}: mean with 95% interval ({grid['interval_method'].iloc[0]})", fontsize=10
        )
        ax.margins(x=0.1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never over a point
    _save(fig, path)
