"""The study sections of the report: the pruning study and what distillation bought, each question
answered from the report's comparisons table; the per-class and baseline-tuning sections. The
quantization study and the claims are :mod:`.quantization_sections`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from prunequant.report.aggregate import fp32_torch_rows
from prunequant.report.comparisons import SUMMARY_FIELDS, Predictions
from prunequant.report.markdown import confidence_label, difference, interval, speedup, table

__all__ = [
    "bytes_text",
    "compared_rows",
    "pruning_section",
    "distillation_section",
    "per_class_section",
    "tuning_section",
]


def compared_rows(summary: pd.DataFrame, comparisons: pd.DataFrame, question: str) -> list[dict]:
    """Each comparison of ``question``: the variant's summary row, its comparison as ``cmp_*``
    columns (see :func:`prunequant.report.markdown.difference`) and the reference's row as ``ref``."""
    by_variant = summary.set_index("variant", drop=False)
    records = []
    for comparison in comparisons[comparisons["question"] == question].to_dict("records"):
        row = by_variant.loc[comparison["variant"]].to_dict()
        row |= {f"cmp_{field}": comparison[column] for field, column in SUMMARY_FIELDS.items()}
        row["ref"] = by_variant.loc[comparison["reference"]].to_dict()
        records.append(row)
    return records


_CMP = lambda r: difference(r, "cmp")  # noqa: E731 - a column renderer


def _against_twin(rows: list[dict], first: tuple, headers: tuple[str, str, str]) -> str:
    """A table of paired comparisons: a naming column, the variant's and its reference's test
    accuracy, and the paired difference (``headers`` name the last three)."""
    variant, reference, difference_header = headers
    return table(
        rows,
        [
            first,
            (variant, lambda r: interval(r, "accuracy")),
            (reference, lambda r: interval(r["ref"], "accuracy")),
            (difference_header, _CMP),
        ],
    )


def _against_reference(title: str, text: str, rows: list[dict], *, reference: str) -> list[str]:
    """A study subsection: each variant's test accuracy and its paired difference from ``reference``."""
    return [
        f"### {title}",
        text,
        table(
            rows,
            [
                ("variant", lambda r: f"`{r['model']}`"),
                ("test acc % [CI]", lambda r: interval(r, "accuracy")),
                ("params", lambda r: f"{int(r['parameters']):,}"),
                (f"vs {reference}, pp [CI]", _CMP),
            ],
        ),
    ]


def pruning_section(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    *,
    sensitivity_rates: Mapping[str, Mapping[str, float]],
    latency: pd.DataFrame,
) -> str:
    """Criteria vs random, layer vs global, one-shot vs iterative, structured vs unstructured,
    sensitivity-derived rates, and pruned vs from scratch: each a table of paired verdicts."""
    fp32 = fp32_torch_rows(summary)
    parts = ["## The pruning study", "All rows: fp32 in PyTorch, test accuracy over every run."]

    criteria_rows = compared_rows(summary, comparisons, "criterion_vs_random")
    if criteria_rows:
        parts += [
            "### Which channels to drop: criteria against a random choice",
            "Each criterion against `random` at the same rate (layer-wise, one shot, same fine-tuning). A "
            "criterion earns its keep only where it is *better* than random.",
            table(
                criteria_rows,
                [
                    ("rate", lambda r: f"{r['rate']:g}"),
                    ("criterion", lambda r: r["criterion"]),
                    ("test acc % [CI]", lambda r: interval(r, "accuracy")),
                    ("vs random, pp [CI]", _CMP),
                ],
            ),
        ]

    scope_rows = compared_rows(summary, comparisons, "global_vs_layer")
    if scope_rows:
        text = (
            "Global scope ranks all blocks' channels together (after per-layer normalisation, with "
            "a floor per block); compared with layer-wise pruning of the same criterion and final rate."
        )
        if all(row["cmp_identical"] for row in scope_rows):
            text += (
                " Here every global variant made the same predictions as its layer-wise twin in every "
                "run, as it must when the model has a single prunable block (global ranking is then "
                "layer-wise ranking): the question needs a model with several prunable blocks."
            )
        parts += _against_reference("Layer-wise vs global ranking", text, scope_rows, reference="layer-wise")
    schedule_rows = compared_rows(summary, comparisons, "iterative_vs_oneshot")
    if schedule_rows:
        parts += _against_reference(
            "One-shot vs iterative pruning",
            "Same criterion, scope and final channel count; the iterative schedule splits the same total "
            "fine-tuning epochs between its steps, so the comparison measures the schedule, not the budget.",
            schedule_rows,
            reference="one-shot",
        )

    unstructured = fp32[fp32["family"] == "unstructured"]
    if len(unstructured):
        parts += [
            "### Structured vs unstructured pruning, and what sparse storage really saves",
            "Unstructured pruning zeroes weights but keeps every channel: the dense model still stores and "
            "multiplies every weight. Stored bytes below count the weight payload in each format; the index "
            "widths are given in the sparsity records. Where the CSR or bitmask size is above the "
            "dense size, "
            "the indices eat the saving.",
            table(
                unstructured,  # the summary carries each storage format's bytes
                [
                    ("variant", lambda r: f"`{r['model']}`"),
                    ("test acc % [CI]", lambda r: interval(r, "accuracy")),
                    ("vs baseline, pp [CI]", lambda r: difference(r, "vs_baseline")),
                    (
                        "non-zero params",
                        lambda r: f"{int(r['nonzero_parameters']):,} of {int(r['parameters']):,}",
                    ),
                    *[
                        (label, _bytes_column(key))
                        for key, label in (
                            ("storage_dense_fp32", "dense fp32 B"),
                            ("storage_csr_fp32", "CSR fp32 B"),
                            ("storage_bitmask_fp32", "bitmask fp32 B"),
                            ("storage_csr_int8", "CSR int8 B"),
                            ("storage_bitmask_int8", "bitmask int8 B"),
                        )
                    ],
                ],
            ),
        ]
        dense = _dense_latency(latency, unstructured["model"])
        if dense:
            parts.append(dense)
        nearest_rows = compared_rows(summary, comparisons, "sparse_vs_structured")
        if nearest_rows:
            parts.append(_nearest_structured(nearest_rows))

    sensitivity = fp32[fp32["family"] == "sensitivity"]
    if len(sensitivity):
        lines = [
            "### Per-block rates from the sensitivity curves",
            "Each block pruned at the largest rate whose validation accuracy (without fine-tuning) "
            "stayed within "
            "the accepted drop; then fine-tuned like every pruned model.",
        ]
        for row in sensitivity.to_dict("records"):
            rates = sensitivity_rates.get(row["model"], {})
            text = ", ".join(f"{block}: {rate:g}" for block, rate in sorted(rates.items())) or "–"
            lines.append(
                f"- `{row['model']}`: rates per block (first run) {text}; test "
                f"{interval(row, 'accuracy')} %, "
                f"{difference(row, 'vs_baseline')} against the baseline."
            )
        parts.append("\n".join(lines))

    scratch_rows = compared_rows(summary, comparisons, "pruned_vs_scratch")
    if scratch_rows:
        parts += [
            "### Pruned and fine-tuned vs trained from scratch",
            "The question of Liu et al., *Rethinking the Value of Network Pruning*: the same "
            "architecture trained "
            "from random initialisation with the baseline's epoch budget. *better* means prune + "
            "fine-tune beats it.",
            _against_twin(
                scratch_rows,
                ("rate", lambda r: f"{r['rate']:g}"),
                (
                    "pruned + fine-tuned, test acc % [CI]",
                    "from scratch, test acc % [CI]",
                    "pruned + fine-tuned minus scratch, pp [CI]",
                ),
            ),
        ]
    return "\n\n".join(parts)


def _bytes_column(key: str):
    return lambda row: bytes_text(row.get(key))


def bytes_text(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{int(value):,}"


def _dense_latency(latency: pd.DataFrame, models) -> str:
    if latency.empty or "against" not in latency:
        return ""
    rows = latency[
        (latency["against"] == "baseline")
        & latency["variant"].str.split("/").str[0].isin(list(models))
        & latency["variant"].str.endswith("fp32_torch")
    ]
    if rows.empty:
        return ""
    lines = ["Dense latency does not drop with sparsity (zeros are still multiplied):"]
    for row in rows.to_dict("records"):
        lines.append(
            f"- `{row['variant']}` at batch {row['batch_size']}: "
            + speedup(
                {
                    "x_speedup": row["speedup"],
                    "x_speedup_low": row["speedup_low"],
                    "x_speedup_high": row["speedup_high"],
                    "x_speedup_verdict": row["speedup_verdict"],
                    "x_reference": row["reference"],
                },
                "x",
            )
        )
    return "\n".join(lines)


def _nearest_structured(rows: list[dict]) -> str:
    """Each sparse model against the channel-pruned model closest in non-zero parameters."""
    return (
        "At (nearly) equal non-zero parameters, each sparse model against the closest channel-pruned one:\n\n"
        + table(
            rows,
            [
                ("sparse variant", lambda r: f"`{r['model']}` ({int(r['nonzero_parameters']):,} non-zero)"),
                (
                    "channel-pruned",
                    lambda r: (
                        f"`{r['ref']['model']}` ({int(r['ref']['nonzero_parameters']):,}, "
                        f"{int(r['ref']['weight_bytes']):,} B dense)"
                    ),
                ),
                ("sparse minus pruned, pp [CI]", _CMP),
            ],
        )
    )


def distillation_section(summary: pd.DataFrame, comparisons: pd.DataFrame) -> str:
    """What distillation bought: each distilled variant against its twin trained on labels alone
    (same architecture, epochs and deployment), and distilled students from scratch against the
    pruned and fine-tuned model of the same widths."""
    twins = compared_rows(summary, comparisons, "distilled_vs_plain")
    if not twins:
        return ""
    parts = [
        "## What distillation buys",
        "Each model trained against a teacher (soft targets, Hinton et al. 2015; the variant name ends "
        "in the distillation's name) against its twin trained on the labels alone: same architecture, "
        "same epochs, same deployment, paired over the same runs and test samples.",
        _against_twin(
            twins,
            ("distilled variant", lambda r: f"`{r['variant']}`"),
            ("test acc % [CI]", "without teacher, test acc % [CI]", "distilled minus plain, pp [CI]"),
        ),
    ]
    students = compared_rows(summary, comparisons, "distilled_scratch_vs_pruned")
    if students:
        parts += [
            "Did the pruned weights or the teacher's knowledge do the work? The pruned architecture "
            "trained from random initialisation against the teacher, against the same widths pruned "
            "from the baseline and fine-tuned:",
            _against_twin(
                students,
                ("rate", lambda r: f"{r['rate']:g}"),
                (
                    "distilled student, test acc % [CI]",
                    "pruned + fine-tuned, test acc % [CI]",
                    "student minus pruned, pp [CI]",
                ),
            ),
        ]
    return "\n\n".join(parts)


def per_class_section(
    predictions: Predictions, variants: Mapping[str, str], classes: list[str]
) -> tuple[str, dict[str, np.ndarray]]:
    """Per-class test accuracy and pooled confusion matrices of the named variants."""
    matrices = {}
    accuracy = {}
    for title, variant in variants.items():
        matrix = np.zeros((len(classes), len(classes)), dtype=int)
        for run, _ in predictions.correct(variant).items():
            frame = predictions.table(run, variant)
            frame = frame[frame["split"] == "test"]
            np.add.at(matrix, (frame["label"].to_numpy(), frame["prediction"].to_numpy()), 1)
        matrices[f"{title}: `{variant}`".replace("`", "")] = matrix
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy[variant] = np.diag(matrix) / matrix.sum(axis=1) * 100
    rows = [
        {"class": name, **{variant: f"{values[index]:.1f}" for variant, values in accuracy.items()}}
        for index, name in enumerate(classes)
    ]
    columns = [("class", lambda r: str(r["class"]))] + [
        (f"`{variant}` %", (lambda key: lambda r: r[key])(variant)) for variant in accuracy
    ]
    text = "## Per-class test accuracy (all runs pooled)\n\n" + table(rows, columns)
    return text, matrices


def tuning_section(tables: Mapping[str, pd.DataFrame], chosen: Mapping[str, str]) -> str:
    """The baseline-tuning grid per data split, validation accuracy only, the chosen point marked."""
    first = next(iter(tables.values()))
    sizes, rates = first["batch_size"].nunique(), first["lr"].nunique()
    level = confidence_label(first["confidence"].iloc[0])
    rows = [
        row | {"split": split, "is_chosen": row["candidate"] == chosen[split]}
        for split, grid in tables.items()
        for row in grid.to_dict("records")
    ]
    choices = ", ".join(f"`{split}`: **{name}**" for split, name in chosen.items())
    return (
        "## Baseline tuning\n\n"
        f"The baseline of every run was chosen from a grid of {sizes} batch size(s) × {rates} learning "
        "rate(s), each trained in every run, by mean **validation** accuracy over the runs of its data "
        "split (ties: lower validation loss); the test split played no part, and "
        "no candidate's test accuracy was read. Pruning and quantization start from the chosen baseline. "
        f"Chosen: {choices}. Intervals: {first['interval_method'].iloc[0]}.\n\n"
        + table(
            rows,
            [
                ("split", lambda r: f"`{r['split']}`"),
                ("candidate", lambda r: f"`{r['candidate']}`"),
                ("batch size", lambda r: str(r["batch_size"])),
                ("learning rate", lambda r: f"{r['lr']:g}"),
                (f"val acc % [{level} CI]", lambda r: interval(r, "val_accuracy")),
                ("val acc per run %", lambda r: r["val_accuracy_by_run"]),
                ("val loss", lambda r: f"{r['val_loss']:.4f}"),
                ("chosen", lambda r: "✔" if r["is_chosen"] else ""),
            ],
        )
    )
