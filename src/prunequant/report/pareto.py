"""Pareto figures: test accuracy against a cost, with intervals and the non-dominated variants marked.

One colour per family and one marker per deployment, the same in every figure. Only the
non-dominated variants are labelled, with a number beside the point and the name in a key beside
the axes, so labels never overlap however close the points sit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import offset_copy

from prunequant.stats import pareto_mask

__all__ = ["FAMILY_COLORS", "PARETO_FIGURES", "plot_pareto", "plot_pareto_figures"]

PathLike = str | os.PathLike

FAMILY_COLORS = {
    "baseline": "black",
    "structured": "tab:blue",
    "unstructured": "tab:green",
    "scratch": "tab:red",
    "sensitivity": "tab:purple",
}
_SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
_DEPLOYMENT_MARKERS = {"fp32_torch": "o", "fp32_onnxruntime": "s"}
_INT8_MARKERS = ("^", "v", "D", "P", "X")  # one per int8 recipe, in order of appearance
_LOG_SPAN = (
    5.0  # log x once the largest cost is this many times the smallest (torch vs ONNX Runtime latency: ~6x)
)
_DODGE_PT = 7.0  # sideways distance between the deployments of one model, in points

# (cost column, x-axis label with unit, file name, title): the figures `plot_pareto_figures` draws.
PARETO_FIGURES = (
    (
        "weight_bytes",
        "stored weight bytes (B)",
        "pareto_weight_bytes.png",
        "Test accuracy vs stored weight bytes",
    ),
    ("macs", "multiply-accumulates per sample (MACs)", "pareto_macs.png", "Test accuracy vs compute"),
    (
        "latency_batch1_ms",
        "median latency per call at batch 1 (ms)",
        "pareto_latency_batch1.png",
        "Test accuracy vs latency, batch 1",
    ),
    (
        "latency_batch64_ms",
        "median latency per call at batch 64 (ms)",
        "pareto_latency_batch64.png",
        "Test accuracy vs latency, batch 64",
    ),
)

_DPI = 100
_FIGSIZE = (11.0, 5.5)  # inches: the axes plus a key of the front on the right


def plot_pareto(table: pd.DataFrame, *, x: str, x_label: str, path: PathLike, title: str) -> Path:
    """Mean test accuracy (y, interval as error bars) against the cost column ``x``; returns the path.

    ``table`` is the per-variant table of :func:`prunequant.report.aggregate.aggregate` (columns
    ``variant``, ``family``, ``deployment``, ``accuracy``, ``accuracy_low``, ``accuracy_high``,
    ``interval_method`` and ``x``). Variants without a value of ``x`` are left out and counted in
    the footnote. The front is computed on the mean accuracies.
    """
    missing = [
        c
        for c in ("variant", "family", "deployment", "accuracy", "accuracy_low", "accuracy_high", x)
        if c not in table
    ]
    if missing:
        raise ValueError(f"plot_pareto: table lacks column(s) {', '.join(missing)}")
    shown = table[np.isfinite(pd.to_numeric(table[x], errors="coerce"))].reset_index(drop=True)
    if shown.empty:
        raise ValueError(f"plot_pareto: no variant has a value of {x!r}")
    on_front = pareto_mask(shown[x].to_numpy(float), shown["accuracy"].to_numpy(float))
    colors = _family_colors(table["family"])
    markers = _deployment_markers(table["deployment"])

    fig = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    # The key of the front gets its own (empty) axes, so the layout makes room for it.
    ax, key_ax = fig.subplots(1, 2, width_ratios=(3.0, 1.0))
    key_ax.set_axis_off()
    # Deployments of one model share its cost (MACs, often bytes): each deployment is drawn a few
    # points to the side of the true cost so that markers and error bars stay apart.
    dodge = {
        deployment: offset_copy(
            ax.transData, fig=fig, x=_DODGE_PT * (i - (len(markers) - 1) / 2), units="points"
        )
        for i, deployment in enumerate(markers)
    }
    for (family, deployment), rows in shown.groupby(["family", "deployment"], sort=False):
        ax.errorbar(
            rows[x],
            rows["accuracy"],
            yerr=[rows["accuracy"] - rows["accuracy_low"], rows["accuracy_high"] - rows["accuracy"]],
            fmt=markers[deployment],
            color=colors[family],
            markersize=7,
            elinewidth=1,
            capsize=3,
            alpha=0.8,
            transform=dodge[deployment],
        )
    # Artists drawn with an offset transform do not count towards autoscaling: register the
    # extent of every point and error bar by hand.
    for column in ("accuracy_low", "accuracy_high"):
        ax.update_datalim(np.column_stack([shown[x].to_numpy(float), shown[column].to_numpy(float)]))
    front = shown[on_front].sort_values([x, "accuracy", "variant"])
    ax.plot(front[x], front["accuracy"], color="gray", linestyle="--", linewidth=1, zorder=1)
    for row in front.itertuples(index=False):
        ax.scatter(
            getattr(row, x),
            row.accuracy,
            s=260,
            facecolors="none",
            edgecolors="gray",
            linewidths=1.5,
            zorder=3,
            transform=dodge[row.deployment],
        )
    key_lines = []
    # Variants at the same cost and accuracy (the same model in two fp32 runtimes, say) share a
    # number, so their labels cannot sit on top of each other.
    for number, ((cost, accuracy), rows) in enumerate(front.groupby([x, "accuracy"], sort=True), start=1):
        rightmost = max(rows["deployment"], key=list(markers).index)
        ax.annotate(
            str(number),
            (cost, accuracy),
            xycoords=dodge[rightmost],
            xytext=(9, 6),
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
        )
        names = "\n   ".join(rows["variant"])
        key_lines.append(f"{number:>2} {names}\n   {accuracy:.1f}% at {_format_cost(cost)}")

    costs = shown[x].to_numpy(float)
    if costs.min() > 0 and costs.max() >= _LOG_SPAN * costs.min():
        ax.set_xscale("log")
        x_label += ", log scale"
        # Plain numbers at 1-2-3-5 steps read faster than powers of ten.
        ax.set_xticks(_round_ticks(costs.min() / 1.15, costs.max() * 1.15))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _format_cost(value)))
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _format_cost(value)))
    ax.margins(x=0.08, y=0.08)
    ax.autoscale_view()
    ax.set(title=title, xlabel=x_label, ylabel="test accuracy (%), mean over runs")
    ax.grid(alpha=0.3, which="both")
    handles = [
        Line2D([], [], color=color, marker="o", linestyle="", label=family)
        for family, color in colors.items()
    ]
    handles += [
        Line2D([], [], color="dimgray", marker=marker, linestyle="", label=deployment.replace("_", " "))
        for deployment, marker in markers.items()
    ]
    handles.append(
        Line2D(
            [],
            [],
            color="gray",
            marker="o",
            markersize=14,
            markerfacecolor="none",
            linestyle="--",
            label="Pareto front",
        )
    )
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    key_ax.text(
        0.0,
        1.0,
        "Pareto front (lower cost, higher accuracy):\n\n" + "\n".join(key_lines),
        transform=key_ax.transAxes,
        fontsize=8,
        va="top",
        family="monospace",
    )
    key_ax.text(
        0.0,
        0.0,
        _footnote(shown, len(table) - len(shown)),
        transform=key_ax.transAxes,
        fontsize=8,
        va="bottom",
        color="dimgray",
        wrap=True,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def plot_pareto_figures(table: pd.DataFrame, directory: PathLike) -> list[Path]:
    """The four figures of :data:`PARETO_FIGURES` in ``directory``; a latency figure is skipped
    (not drawn) when no variant has that latency."""
    paths = []
    for column, label, name, title in PARETO_FIGURES:
        if column in table and pd.to_numeric(table[column], errors="coerce").notna().any():
            paths.append(
                plot_pareto(table, x=column, x_label=label, path=Path(directory) / name, title=title)
            )
    return paths


def _family_colors(families: pd.Series) -> dict[str, str]:
    colors, spare = {}, 0
    known = [f for f in FAMILY_COLORS if f in set(families)]
    for family in known + sorted(set(families) - set(known)):
        if family in FAMILY_COLORS:
            colors[family] = FAMILY_COLORS[family]
        else:
            colors[family] = _SPARE_COLORS[spare % len(_SPARE_COLORS)]
            spare += 1
    return colors


def _deployment_markers(deployments: pd.Series) -> dict[str, str]:
    markers, int8 = {}, 0
    known = [d for d in _DEPLOYMENT_MARKERS if d in set(deployments)]
    for deployment in known + sorted(set(deployments) - set(known)):
        if deployment in _DEPLOYMENT_MARKERS:
            markers[deployment] = _DEPLOYMENT_MARKERS[deployment]
        else:
            markers[deployment] = _INT8_MARKERS[int8 % len(_INT8_MARKERS)]
            int8 += 1
    return markers


def _round_ticks(low: float, high: float) -> list[float]:
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    return [m * 10.0**d for d in decades for m in (1, 2, 3, 5) if low <= m * 10.0**d <= high]


def _format_cost(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _footnote(shown: pd.DataFrame, n_left_out: int) -> str:
    methods = sorted(set(shown.get("interval_method", pd.Series(dtype=str)).dropna()))
    confidence = shown["confidence"].iloc[0] if "confidence" in shown else 0.95
    method = "; ".join(methods) or "method not given"
    note = f"Error bars: {confidence:.0%} interval of test accuracy ({method})."
    if n_left_out:
        note += f" {n_left_out} variant(s) without this cost are not shown."
    return note
