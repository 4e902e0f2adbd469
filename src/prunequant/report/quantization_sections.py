"""The quantization study and the claims about pruning against quantization, as report text."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from prunequant.report.aggregate import fp32_torch_rows
from prunequant.report.markdown import difference, interval, speedup, table
from prunequant.report.sections import bytes_text

__all__ = ["claims_section", "quantization_section"]


def quantization_section(
    summary: pd.DataFrame,
    latency: pd.DataFrame,
    records: Mapping[str, Mapping],
    chosen_recipes: Mapping[str, str],
) -> str:
    """Recipes per model: validation and test accuracy, agreement, bytes and speed; partial and QAT."""
    int8 = summary[summary["precision"] == "int8"]
    if int8.empty:
        return ""
    speed = {}
    if not latency.empty and "against" in latency:
        for row in latency[latency["against"] == "parent"].to_dict("records"):
            speed[(row["variant"], row["batch_size"])] = row
    parts = [
        "## The quantization study",
        "Every recipe quantizes the same fp32 model; *agreement* is top-1 agreement with the fp32 parent in "
        "ONNX Runtime on the test set, with the mean and max absolute logit error. The recipe marked ✓ is "
        "the one with the best **validation** accuracy for that model (ties: fewer bytes).",
    ]
    for model, rows in int8.groupby("model", sort=False):
        parent = summary[(summary["model"] == model) & (summary["deployment"] == "fp32_onnxruntime")]
        parts.append(f"### `{model}`")
        if len(parent):
            parts.append(
                f"fp32 parent in ONNX Runtime: validation {interval(parent.iloc[0], 'val_accuracy')} %, "
                f"test {interval(parent.iloc[0], 'accuracy')} %, "
                f"{bytes_text(parent.iloc[0]['weight_bytes'])} weight bytes."
            )
        parts.append(
            table(
                rows,
                [
                    ("recipe", _recipe_column(chosen_recipes.get(model))),
                    ("val acc %", lambda r: interval(r, "val_accuracy")),
                    ("test acc % [CI]", lambda r: interval(r, "accuracy")),
                    ("vs fp32 parent, pp [CI]", lambda r: difference(r, "vs_parent")),
                    ("agreement %", lambda r: f"{r['agreement_pct']:.2f}"),
                    (
                        "mean / max logit err",
                        lambda r: f"{r['mean_abs_logit_error']:.4f} / {r['max_abs_logit_error']:.3f}",
                    ),
                    ("weight B", lambda r: bytes_text(r["weight_bytes"])),
                    ("speedup b1 vs parent", lambda r: _speed(speed, r["variant"], 1)),
                    ("speedup b64 vs parent", lambda r: _speed(speed, r["variant"], 64)),
                ],
            )
        )
        for row in rows.to_dict("records"):
            record = records.get(f"{row['model']}/int8-{row['recipe']}")
            if not record:
                continue
            if "layers" in record:  # partial quantization
                kept = ", ".join(f"`{node}`" for node in record["float_nodes"]) or "none"
                parts.append(
                    f"Partial quantization (`{row['recipe']}`, first run): validation accuracy "
                    f"{100 * record['fp32_val_accuracy']:.2f} % in fp32, "
                    f"{100 * record['full_int8_val_accuracy']:.2f} % fully int8 "
                    f"(budget {record['budget_pp']:g} pp); "
                    f"layers kept in float: {kept}; final {100 * record['final_val_accuracy']:.2f} %."
                )
            if "int8_vs_fake_quant_test" in record:  # quantization-aware training
                agreement = record["int8_vs_fake_quant_test"]
                parts.append(
                    f"QAT (`{row['recipe']}`, first run): validation accuracy of the fake-quantized model "
                    f"{record['val_accuracy_fake_quant']:.2f} % (best epoch {record['best_epoch']} of "
                    f"{record['epochs']}), of the deployed int8 model "
                    f"{record['val_accuracy_int8']:.2f} %; the deployed model agrees with the "
                    f"fake-quantized one on {agreement['agreement_pct']:.2f} % of "
                    f"test predictions (mean / max |logit| error {agreement['mean_abs_logit_error']:.4f} / "
                    f"{agreement['max_abs_logit_error']:.3f})."
                )
    return "\n\n".join(parts)


def _recipe_column(chosen: str | None):
    return lambda row: row["recipe"] + (" ✓" if row["recipe"] == chosen else "")


def _speed(speed: Mapping, variant: str, batch: int) -> str:
    row = speed.get((variant, batch))
    if row is None:
        return "–"
    return speedup(
        {
            "x_speedup": row["speedup"],
            "x_speedup_low": row["speedup_low"],
            "x_speedup_high": row["speedup_high"],
            "x_speedup_verdict": row["speedup_verdict"],
            "x_reference": row["reference"],
        },
        "x",
    )


def claims_section(summary: pd.DataFrame, chosen_recipes: Mapping[str, str]) -> str:
    """The study's claims about pruning vs quantization, each with what this run measured."""
    baseline = summary[summary["variant"] == "baseline/fp32_torch"].iloc[0]
    fp32 = fp32_torch_rows(summary)
    pruned = fp32[fp32["family"].isin(["structured", "sensitivity"])]
    base_recipe = chosen_recipes.get("baseline")
    quantized = (
        summary[(summary["model"] == "baseline") & (summary["recipe"] == base_recipe)]
        if base_recipe
        else summary.iloc[0:0]
    )
    both = summary[(summary["precision"] == "int8") & (summary["model"] != "baseline")]
    if base_recipe:
        both = both[both["recipe"] == base_recipe]
    lines = ["## Pruning vs quantization: the claims, measured", ""]
    if len(quantized) and len(pruned):
        q = quantized.iloc[0]
        ratio = q["weight_bytes"] / baseline["weight_bytes"]
        nearest = pruned.loc[(pruned["weight_bytes"] / baseline["weight_bytes"] - ratio).abs().idxmin()]
        lines.append(
            "1. *At equal compression, quantization loses less accuracy.* Quantization "
            f"(`{q['variant']}`) keeps "
            f"{ratio:.2f}× of the weight bytes at {difference(q, 'vs_parent')} against its fp32 "
            "parent; the pruned "
            f"model closest in bytes (`{nearest['variant']}`, "
            f"{nearest['weight_bytes'] / baseline['weight_bytes']:.2f}×) "
            f"is at {difference(nearest, 'vs_baseline')} against the baseline. "
            + _verdict_of_claim(q.get("vs_parent_diff_pp"), nearest.get("vs_baseline_diff_pp"))
        )
        strongest = pruned.loc[pruned["weight_bytes"].idxmin()]
        lines.append(
            "2. *At high compression, pruning can do better but needs fine-tuning.* The smallest "
            "pruned model "
            f"(`{strongest['variant']}`, "
            f"{strongest['weight_bytes'] / baseline['weight_bytes']:.2f}× the bytes) is at "
            f"{difference(strongest, 'vs_baseline')} after fine-tuning; int8 alone cannot go below about "
            f"{ratio:.2f}× here. Without fine-tuning, the sensitivity curves show what pruning "
            "costs (figure below)."
        )
    if len(both):
        smallest = both.loc[both["weight_bytes"].idxmin()]
        lines.append(
            f"3. *The two combine.* Pruned and quantized, `{smallest['variant']}` stores "
            f"{smallest['weight_bytes'] / baseline['weight_bytes']:.2f}× the baseline's weight bytes at "
            f"{interval(smallest, 'accuracy')} % test accuracy ({difference(smallest, 'vs_parent')} "
            "against its "
            "fp32 parent). The figure *pruning vs quantization* marks the non-dominated points."
        )
    if len(lines) == 2:
        return ""
    return "\n".join(lines)


def _verdict_of_claim(quantization_drop, pruning_drop) -> str:
    if (
        quantization_drop is None
        or pruning_drop is None
        or np.isnan(quantization_drop)
        or np.isnan(pruning_drop)
    ):
        return ""
    gap = quantization_drop - pruning_drop
    if abs(gap) < 1e-9:
        return "Here the two changed accuracy by the same amount."
    better = "quantization" if gap > 0 else "pruning"
    return (
        f"Here {better} kept {abs(gap):.2f} pp more (point estimates; where both intervals include zero, "
        "neither lost a detectable amount)."
    )
