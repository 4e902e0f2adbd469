"""The Markdown report: what was run, the headline result, the tables, figures and method notes."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from prunequant.report.summary import (
    BASELINE_MODEL,
    REFERENCE_SETTING,
    PathLike,
    _baseline_row,
    _prepare,
    _settings,
)

__all__ = ["write_report"]

QUANTIZED_PRECISION = "int8"

_SHAPE_KEYS = (("n_channels", "channel(s)"), ("length", "time steps"))
_SPLIT_KEYS = (("n_train", "train"), ("n_val", "validation"), ("n_test", "test"))

_SETTING_TEXT = {
    ("fp32", "torch"): "fp32 in PyTorch eager (the trained checkpoint)",
    ("fp32", "onnxruntime"): "fp32 ONNX with BatchNorm folded, in ONNX Runtime",
    ("int8", "onnxruntime"): "statically quantized int8 ONNX, in ONNX Runtime",
}

_FIGURE_TEXT = {
    "accuracy_vs_rate": (
        "Test accuracy vs prune rate",
        "Test accuracy of every model by prune rate, one line per precision and runtime: the slope "
        "of a line is what pruning costs, the gap between lines at one rate what export and "
        "quantization cost.",
    ),
    "accuracy_vs_size": (
        "Test accuracy vs serialized size",
        "Each point is one variant, labelled by model; points further left are smaller files, "
        "points higher up more accurate.",
    ),
    "training_curves": (
        "Training curves",
        "Loss and accuracy per epoch on the training (dashed) and validation (solid) splits: the "
        "baseline's training and each pruned model's fine-tuning.",
    ),
}


def write_report(
    summary: pd.DataFrame,
    *,
    figures: Mapping[str, PathLike],
    dataset_meta: Mapping,
    out_path: PathLike,
    accuracy_budget_pp: float = 1.0,
) -> None:
    """Write the Markdown report; figure paths are written as given, relative to the report.

    ``accuracy_budget_pp`` is how far below the baseline fp32/torch accuracy an int8 variant may
    fall and still be named in the headline.
    """
    sections = [
        "# prunequant report",
        _what_was_run(summary, dataset_meta),
        _headline(summary, accuracy_budget_pp),
        "## All variants\n\n" + _markdown_table(summary, _SUMMARY_TABLE),
        "## Cost and benefit vs baseline\n\n" + _cost_benefit(summary),
        _figures_section(figures),
        _method_notes(summary, dataset_meta),
    ]
    _prepare(out_path).write_text("\n\n".join(sections) + "\n", encoding="utf-8")


def _what_was_run(summary: pd.DataFrame, meta: Mapping) -> str:
    pruned_rows = summary[summary["model"] != BASELINE_MODEL]
    rates = sorted(pruned_rows["prune_rate"].unique())
    pruned = list(dict.fromkeys(pruned_rows.sort_values("prune_rate", kind="stable")["model"]))
    settings = "; ".join(_SETTING_TEXT.get(s, f"{s[0]} in {s[1]}") for s in _settings(summary))
    if rates:
        pruning = (
            f"then pruned structurally at {len(rates)} rate(s) ({', '.join(f'{r:g}' for r in rates)}) "
            f"and fine-tuned, giving {', '.join(f'`{m}`' for m in pruned)}"
        )
    else:
        pruning = "no pruned models were evaluated"
    lines = [
        "## What was run",
        "",
        f"A baseline 1D CNN was trained, {pruning}. Every model was evaluated on the held-out test "
        f"split as: {settings}.",
        "",
        "Dataset:",
        "",
        *_dataset_lines(meta),
    ]
    return "\n".join(lines)


def _dataset_lines(meta: Mapping) -> list[str]:
    lines = []
    source = meta.get("source")
    if isinstance(source, Mapping):
        lines.append("- source: " + ", ".join(f"{k}: {v}" for k, v in source.items()))
    elif source is not None:
        lines.append(f"- source: {source}")
    classes = meta.get("classes")
    if isinstance(classes, list | tuple):
        lines.append(f"- classes ({len(classes)}): " + ", ".join(map(str, classes)))
    elif classes is not None:
        lines.append(f"- classes: {classes}")
    shape = [f"{meta[key]} {label}" for key, label in _SHAPE_KEYS if key in meta]
    if shape:
        lines.append("- input: " + " x ".join(shape))
    sizes = _split_sizes(meta)
    if sizes:
        lines.append("- split sizes: " + ", ".join(f"{label} {size}" for label, size in sizes.items()))
    shown = {"source", "classes", "split_sizes", *(key for key, _ in _SHAPE_KEYS + _SPLIT_KEYS)}
    for key, value in meta.items():
        if key not in shown and isinstance(value, str | int | float | bool):
            lines.append(f"- {key}: {value}")
    return lines or ["- no metadata recorded"]


def _split_sizes(meta: Mapping) -> dict[str, int]:
    """Split sizes by label, from a ``split_sizes`` mapping or from ``n_train``-style keys."""
    nested = meta.get("split_sizes")
    if isinstance(nested, Mapping):
        named = {"train": "train", "val": "validation", "test": "test"}
        return {named.get(key, key): value for key, value in nested.items()}
    return {label: meta[key] for key, label in _SPLIT_KEYS if key in meta}


def _headline(summary: pd.DataFrame, budget_pp: float) -> str:
    reference = _baseline_row(summary, REFERENCE_SETTING)
    text = (
        f"The baseline reaches {reference['accuracy']:.2f}% test accuracy in "
        f"{'/'.join(REFERENCE_SETTING)} with a {int(reference['size_bytes'])}-byte file."
    )
    quantized = summary[summary["precision"] == QUANTIZED_PRECISION]
    within = quantized[quantized["accuracy_delta_pp_vs_fp32_torch"] >= -budget_pp]
    if quantized.empty:
        text += f" No {QUANTIZED_PRECISION} variants were evaluated."
    elif within.empty:
        best = quantized.sort_values("accuracy", ascending=False).iloc[0]
        text += (
            f" No {QUANTIZED_PRECISION} variant stays within {budget_pp:.2f} pp of it; the most "
            f"accurate, **{best['variant']}**, reaches {best['accuracy']:.2f}% "
            f"({best['accuracy_delta_pp_vs_fp32_torch']:+.2f} pp)."
        )
    else:
        # Smallest file first; among equal sizes the more accurate one.
        best = within.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]
        fp32 = _baseline_row(summary, ("fp32", best["runtime"]))
        text += (
            f" The smallest {QUANTIZED_PRECISION} variant within {budget_pp:.2f} pp of that is "
            f"**{best['variant']}**: {best['accuracy']:.2f}% "
            f"({best['accuracy_delta_pp_vs_fp32_torch']:+.2f} pp), {int(best['size_bytes'])} bytes "
            f"({best['size_ratio']:.3f}x the baseline file), and {best['speedup_batch64']:.2f}x "
            f"faster at batch 64 than the baseline fp32 model in {best['runtime']} "
            f"({best['latency_batch64_ms']:.3f} vs {fp32['latency_batch64_ms']:.3f} ms)."
        )
    return "## Headline\n\n" + text


def _cost_benefit(summary: pd.DataFrame) -> str:
    reference = _baseline_row(summary, REFERENCE_SETTING)
    kept = summary.assign(
        parameters_kept=summary["parameters"] / reference["parameters"],
        macs_kept=summary["macs"] / reference["macs"],
    )
    return _markdown_table(kept, _COST_TABLE)


def _figures_section(figures: Mapping[str, PathLike]) -> str:
    parts = ["## Figures"]
    for name, path in figures.items():
        caption, sentence = _FIGURE_TEXT.get(name, (name.replace("_", " ").capitalize(), ""))
        parts.append(f"![{caption}]({Path(path).as_posix()})" + (f"\n\n{sentence}" if sentence else ""))
    return "\n\n".join(parts)


def _method_notes(summary: pd.DataFrame, meta: Mapping) -> str:
    threads = sorted(summary["latency_threads"].unique())
    thread_text = ", ".join(str(t) for t in threads) + (" thread" if threads == [1] else " threads")
    test_size = _split_sizes(meta).get("test")
    n_test = f" ({test_size} examples)" if test_size else ""
    resolution = (
        f" One test example is {100 / test_size:.2f} pp of accuracy: with a single seed, differences "
        "of one or two examples are not evidence that one variant is better than another."
        if test_size
        else ""
    )
    lines = [
        "## How the numbers were measured",
        "",
        f"- Accuracy and loss are on the held-out test split{n_test}. The test split was never used "
        "for selection: training, fine-tuning and every choice between models relied on the "
        f"training and validation splits only.{resolution}",
        f"- Latency is the median wall time of one batch call, at batch 1 and batch 64, with "
        f"{thread_text} per runtime; each runtime ran in its own process, so none shares a thread "
        "pool or warm caches with another.",
        "- Speedups compare a variant only with the baseline fp32 model in the same runtime, never "
        "across runtimes.",
        "- Size is the serialized file: the PyTorch checkpoint for torch rows, the ONNX file for "
        "ONNX Runtime rows; weights (bytes) counts the weight tensors alone. Size ratios and the "
        "parameters and MACs kept are relative to the baseline fp32/torch model.",
    ]
    return "\n".join(lines)


def _markdown_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, Callable]]) -> str:
    header = "| " + " | ".join(title for title, _, _ in columns) + " |"
    # Text columns left-aligned, numbers right-aligned so digits line up.
    rule = "| " + " | ".join(":---" if fmt is str else "---:" for _, _, fmt in columns) + " |"
    body = [
        "| " + " | ".join(_cell(row[key], fmt) for _, key, fmt in columns) + " |"
        for _, row in frame.iterrows()
    ]
    return "\n".join([header, rule, *body])


def _cell(value: object, fmt: Callable) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return fmt(value).replace("|", "\\|")


def _fixed(decimals: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{decimals}f}"


def _integer(value: float) -> str:
    return str(int(value))


def _signed(value: float) -> str:
    return f"{value:+.2f}"


_SUMMARY_TABLE = (
    ("variant", "variant", str),
    ("prune rate", "prune_rate", lambda value: f"{value:g}"),
    ("accuracy (%)", "accuracy", _fixed(2)),
    ("loss", "loss", _fixed(4)),
    ("parameters", "parameters", _integer),
    ("MACs", "macs", _integer),
    ("size (bytes)", "size_bytes", _integer),
    ("weights (bytes)", "weight_bytes", _integer),
    ("latency b1 (ms)", "latency_batch1_ms", _fixed(3)),
    ("latency b64 (ms)", "latency_batch64_ms", _fixed(3)),
    ("threads", "latency_threads", _integer),
)

_COST_TABLE = (
    ("variant", "variant", str),
    ("Δ accuracy vs baseline, same precision/runtime (pp)", "accuracy_delta_pp", _signed),
    ("Δ accuracy vs baseline fp32/torch (pp)", "accuracy_delta_pp_vs_fp32_torch", _signed),
    ("size vs baseline fp32/torch", "size_ratio", lambda v: f"{v:.3f}x"),
    ("batch-64 speedup vs baseline fp32, same runtime", "speedup_batch64", lambda v: f"{v:.2f}x"),
    ("parameters kept", "parameters_kept", lambda v: f"{v:.1%}"),
    ("MACs kept", "macs_kept", lambda v: f"{v:.1%}"),
)
