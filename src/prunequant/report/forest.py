"""Forest plots: one per study question, every comparison of it on one row.

Each row draws the paired difference (variant minus reference, test accuracy, pp) with its raw
interval, the per-run differences as dots (so a reader sees whether the runs agree), and zero as a
line; the colour is the verdict after the family's adjustment.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prunequant.layout import FOREST_QUESTIONS
from prunequant.report.study_figures import DPI, empty_figure

__all__ = ["FOREST_QUESTIONS", "plot_forest"]

PathLike = str | os.PathLike

_VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red"}
_UNDECIDED = "tab:gray"


def plot_forest(comparisons: pd.DataFrame, question: str, path: PathLike) -> None:
    """The forest plot of ``question``'s rows of ``comparisons`` (the report's comparisons table)."""
    rows = comparisons[comparisons["question"] == question].reset_index(drop=True)
    if rows.empty:
        empty_figure(path, f"No comparison of this kind in this study ({question}).")
        return
    fig = Figure(figsize=(7.5, 0.9 + 0.38 * len(rows)))
    ax = fig.add_subplot()
    positions = np.arange(len(rows))[::-1]  # first comparison on top
    for position, row in zip(positions, rows.to_dict("records"), strict=True):
        colour = _VERDICT_COLOURS.get(row["verdict"], _UNDECIDED)
        ax.plot([row["low"], row["high"]], [position, position], color=colour, linewidth=2)
        ax.plot(row["estimate_pp"], position, "D", color=colour, markersize=6)
        per_run = [float(value) for value in str(row["run_differences_pp"]).split(";") if value]
        ax.plot(per_run, [position] * len(per_run), "o", color="black", alpha=0.45, markersize=3.5)
    ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(positions)
    ax.set_yticklabels([_label(row) for row in rows.to_dict("records")], fontsize=8)
    ax.set_xlabel("test accuracy difference, variant minus reference (pp)")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    handles = [
        ax.plot([], [], color=colour, linewidth=2, label=label)[0]
        for label, colour in (
            ("better (adjusted)", _VERDICT_COLOURS["better"]),
            ("worse (adjusted)", _VERDICT_COLOURS["worse"]),
            ("no verdict", _UNDECIDED),
        )
    ]
    run_marker = {"color": "black", "alpha": 0.45, "markersize": 3.5, "label": "one run's difference"}
    handles.append(ax.plot([], [], "o", **run_marker)[0])
    ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


def _label(row: dict) -> str:
    variant, reference = row["variant"], row["reference"]
    # Both sides usually share the deployment: name it once.
    variant_model, _, variant_deployment = variant.partition("/")
    reference_model, _, reference_deployment = reference.partition("/")
    if variant_deployment == reference_deployment:
        return f"{variant_model} vs {reference_model} ({variant_deployment})"
    return f"{variant} vs {reference}"
