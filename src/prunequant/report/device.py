"""The report's device section: which TFLM variants fit each configured device, and what to ship on it.

Each TFLM variant's costs are its measured arena (the recording allocator's total; RAM must hold
it plus ``reserved_ram_bytes``), its flash (the ``.tflite`` file) and its MACs, the largest over
runs (an architecture that varies between runs must fit in every one). A budget given as a share
of the baseline (``"50%"``) is a share of the baseline's TFLM deployment of the first recipe.
The recommendation per device is the fitting variant with the best mean VALIDATION accuracy
(ties: the smaller arena); test accuracy is reported, never used to choose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from prunequant.deploy.budget import budget_verdict, fits, resolve_budget
from prunequant.deploy.stage import UNAVAILABLE

__all__ = [
    "COST_COLUMNS",
    "tflm_costs",
    "device_section",
    "render_device_section",
    "plot_device_budgets",
    "split_unavailable",
    "budget_text",
]

# Cost key (prunequant.deploy.budget) → the evaluation column that measures it.
COST_COLUMNS = {"ram_bytes": "arena_bytes", "flash_bytes": "flash_bytes", "macs": "macs"}
_LIMIT_LABELS = {"ram_bytes": "RAM", "flash_bytes": "flash", "max_macs": "MACs"}


def split_unavailable(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs that were deployed, the rows that say why a variant was not)."""
    if UNAVAILABLE not in runs.columns:
        return runs, runs.iloc[0:0]
    missing = runs[UNAVAILABLE].notna()
    return runs[~missing].drop(columns=UNAVAILABLE), runs[missing]


def tflm_costs(runs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Variant → its largest RAM (arena), flash and MACs over runs, for every TFLM variant."""
    tflm = runs[runs["runtime"] == "tflm"]
    if tflm.empty:
        return {}
    largest = tflm.groupby("variant", sort=False)[list(COST_COLUMNS.values())].max()
    return {
        variant: {cost: float(row[column]) for cost, column in COST_COLUMNS.items()}
        for variant, row in largest.iterrows()
    }


def _baseline_costs(costs: Mapping[str, Mapping], first_recipe: str | None) -> dict[str, float]:
    return dict(costs.get(f"baseline/int8-{first_recipe}_tflm", {}))


def _fit_cell(verdicts: Mapping[str, bool | None]) -> str:
    failed = [_LIMIT_LABELS[limit] for limit, verdict in verdicts.items() if verdict is False]
    unknown = [_LIMIT_LABELS[limit] for limit, verdict in verdicts.items() if verdict is None]
    if failed:
        return "does not fit (" + ", ".join(failed) + ")"
    if unknown:
        return "unknown (" + ", ".join(unknown) + " not measured)"
    return "fits"


def device_section(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    devices: Sequence,
    reserved_ram_bytes: int,
    first_recipe: str | None,
    unavailable: pd.DataFrame,
) -> dict:
    """The section's data: budgets, one row per TFLM variant, a recommendation (or why none) per device."""
    costs = tflm_costs(runs)
    unavailable_rows = (
        unavailable[["variant", "run", UNAVAILABLE]].to_dict("records") if len(unavailable) else []
    )
    if not costs:
        return {
            "table": pd.DataFrame(),
            "budgets": [],
            "choices": [],
            "unavailable": unavailable_rows,
            "reserved_ram_bytes": reserved_ram_bytes,
        }
    baseline = _baseline_costs(costs, first_recipe)
    budgets = [resolve_budget(device, baseline) for device in devices]
    measured = runs[runs["runtime"] == "tflm"].groupby("variant", sort=False)
    means = measured[
        [
            "arena_bytes",
            "arena_head_bytes",
            "arena_tail_bytes",
            "arena_bytes_by_bisection",
            "flash_bytes",
            "peak_activation_bytes",
            "activation_estimate_minus_arena_head_bytes",
            "host_ms_median",
            "onnxruntime_int8_agreement_pct",
            "onnxruntime_int8_mean_abs_logit_error",
            "agreement_pct",
        ]
    ].mean()
    rows = []
    for _, variant in summary[summary["variant"].isin(list(costs))].iterrows():
        row = variant.to_dict() | means.loc[variant["variant"]].to_dict()
        for budget in budgets:
            row[f"fits_{budget.name}"] = _fit_cell(
                fits(costs[variant["variant"]], budget, reserved_ram_bytes)
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    choices = []
    for budget in budgets:
        verdict = budget_verdict(costs, budget, reserved_ram_bytes)
        choice = {"device": budget.name, "limits": budget.limits(), **verdict, "recommended": None}
        fitting = table[table["variant"].isin(verdict["fitting"])]
        if len(fitting):
            best = fitting.sort_values(["val_accuracy", "arena_bytes"], ascending=[False, True]).iloc[0]
            choice["recommended"] = best.to_dict()
        choices.append(choice)
    return {
        "table": table,
        "budgets": budgets,
        "choices": choices,
        "reserved_ram_bytes": reserved_ram_bytes,
        "unavailable": unavailable_rows,
    }


def plot_device_budgets(section: Mapping, path: str | os.PathLike) -> None:
    """Test accuracy (with its interval) against arena bytes and against flash, budget lines drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunequant.report.study_figures import empty_figure

    table = section["table"]
    if table.empty:
        empty_figure(path, "No variant was deployed in TFLM.")
        return
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    reserved = section["reserved_ram_bytes"]
    panels = (("arena_bytes", "ram_bytes", "TFLM arena (B)"), ("flash_bytes", "flash_bytes", "flash (B)"))
    for axis, (column, limit, label) in zip(axes, panels, strict=True):
        errors = [table["accuracy"] - table["accuracy_low"], table["accuracy_high"] - table["accuracy"]]
        axis.errorbar(table[column], table["accuracy"], yerr=errors, fmt="o", capsize=3)
        for x, y, name in zip(table[column], table["accuracy"], table["variant"], strict=True):
            axis.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for budget in section["budgets"]:
            allowed = budget.limits().get(limit)
            if allowed is None:
                continue
            # RAM holds the arena and the application's reserve: the arena may use what is left.
            line = allowed - reserved if limit == "ram_bytes" else allowed
            axis.axvline(line, linestyle="--", color="grey")
            axis.annotate(budget.name, (line, axis.get_ylim()[0]), rotation=90, fontsize=7, va="bottom")
        axis.set_xscale("log")
        axis.set_xlabel(label)
    axes[0].set_ylabel("test accuracy (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def budget_text(limits: Mapping[str, int]) -> str:
    """ "RAM 262144 B, flash 1048576 B" of a budget's limits."""
    units = {"ram_bytes": "B", "flash_bytes": "B", "max_macs": ""}
    return ", ".join(f"{_LIMIT_LABELS[key]} {value} {units[key]}".strip() for key, value in limits.items())


def render_device_section(section: Mapping) -> str:
    """The section in Markdown: budgets, a fits column per device, the recommendation per device."""
    from prunequant.report.markdown import _col, _integer, _number, interval, table

    budgets = section["budgets"]
    lines = [
        "## Down to the microcontroller (TensorFlow Lite Micro)",
        "Every full-int8 recipe converted to a `.tflite` (litert-torch) and run in TFLM's reference "
        "kernels. Arena: the recording allocator's total (head: activations; tail: persistent "
        "structures, on this 64-bit host), checked by bisection; flash: the file. RAM must hold the "
        f"arena plus {section['reserved_ram_bytes']} B reserved for the application. The activation "
        "estimate (largest set of live tensors of the graph, int8) is shown beside the measured head. "
        "Host time is TFLM's reference kernels on this host, **not** a microcontroller's. Partial "
        "quantization is not deployed: its float layers cannot run in TFLM's int8 kernels.",
        "Devices: " + "; ".join(f"**{b.name}** ({budget_text(b.limits())})" for b in budgets) + "."
        if budgets
        else "No device budgets configured (`report.devices`).",
    ]
    columns = [
        ("variant", _col("variant")),
        ("val acc.", lambda row: interval(row, "val_accuracy")),
        ("test acc.", lambda row: interval(row, "accuracy")),
        ("agreement with ORT int8 (%)", _col("onnxruntime_int8_agreement_pct", _number(1))),
        ("agreement with fp32 (%)", _col("agreement_pct", _number(1))),
        (
            "arena total / head / tail (B)",
            lambda row: " / ".join(
                _integer(row[key]) for key in ("arena_bytes", "arena_head_bytes", "arena_tail_bytes")
            ),
        ),
        ("bisection (B)", _col("arena_bytes_by_bisection", _integer)),
        ("estimate (B)", _col("peak_activation_bytes", _integer)),
        ("estimate − head (B)", _col("activation_estimate_minus_arena_head_bytes", _integer)),
        ("flash (B)", _col("flash_bytes", _integer)),
        ("host ms", _col("host_ms_median", _number(3))),
        *((f"{b.name}", _col(f"fits_{b.name}")) for b in budgets),
    ]
    if len(section["table"]):
        lines.append(table(section["table"], columns))
    for choice in section["choices"]:
        best = choice["recommended"]
        if best is None:
            lines.append(f"**{choice['device']}**: {choice['message']}.")
        else:
            lines.append(
                f"**{choice['device']}**: ship `{best['variant']}` (chosen on validation: "
                f"{interval(best, 'val_accuracy')}%; test {interval(best, 'accuracy')}%), arena "
                f"{_integer(best['arena_bytes'])} B, flash {_integer(best['flash_bytes'])} B; "
                f"{len(choice['fitting'])} TFLM variants fit."
            )
    for row in section["unavailable"]:
        lines.append(f"Not deployed in TFLM: `{row['variant']}` ({row['run']}): {row[UNAVAILABLE]}")
    return "\n\n".join(lines)
