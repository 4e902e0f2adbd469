"""Aggregate per-variant evaluation records into a summary table, figures and a Markdown report.

A variant is one (model, precision, runtime) triple, written ``rate0.1/int8/onnxruntime``. The
derived columns compare each variant with the unpruned ``baseline`` model:

- ``accuracy_delta_pp``: accuracy minus the baseline's at the same precision and runtime, in
  percentage points, so it isolates what pruning cost.
- ``accuracy_delta_pp_vs_fp32_torch``: accuracy minus the baseline fp32/torch accuracy (the trained
  checkpoint as is), so it counts pruning, export and quantization together.
- ``size_ratio``: serialized size over the baseline fp32/torch size; below 1 is smaller.
- ``speedup_batch64``: the baseline fp32 batch-64 latency in the same runtime over this variant's;
  above 1 is faster. Runtimes are never compared with each other, because their fixed overheads
  differ more than the models do.

Only files and explicit arguments come in; nothing here reads the workflow config.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

__all__ = [
    "BASELINE_MODEL",
    "DERIVED_COLUMNS",
    "METRIC_KEYS",
    "SUMMARY_COLUMNS",
    "build_summary",
    "plot_accuracy_vs_rate",
    "plot_accuracy_vs_size",
    "plot_training_curves",
    "write_report",
    "write_summary_csv",
]

PathLike = str | os.PathLike

BASELINE_MODEL = "baseline"
REFERENCE_SETTING = ("fp32", "torch")  # the trained checkpoint run as is
QUANTIZED_PRECISION = "int8"

# Required keys of one metrics JSON and the type each must hold.
_METRIC_TYPES: dict[str, type] = {
    "model": str,
    "prune_rate": float,
    "precision": str,
    "runtime": str,
    "accuracy": float,  # percent
    "loss": float,  # mean cross-entropy
    "parameters": int,
    "macs": int,
    "size_bytes": int,  # serialized file
    "weight_bytes": int,
    "latency_batch1_ms": float,  # median per call
    "latency_batch64_ms": float,
    "latency_threads": int,
}
METRIC_KEYS = tuple(_METRIC_TYPES)
DERIVED_COLUMNS = (
    "accuracy_delta_pp",
    "accuracy_delta_pp_vs_fp32_torch",
    "size_ratio",
    "speedup_batch64",
)
SUMMARY_COLUMNS = ("variant", *METRIC_KEYS, *DERIVED_COLUMNS)

# Known values sort in pipeline order (reference first); unknown ones follow alphabetically.
_PRECISION_ORDER = ("fp32", "int8")
_RUNTIME_ORDER = ("torch", "onnxruntime")

_SHAPE_KEYS = (("n_channels", "channel(s)"), ("length", "time steps"))
_SPLIT_KEYS = (("n_train", "train"), ("n_val", "validation"), ("n_test", "test"))

_HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")

_DPI = 100
_FIGSIZE = (8.0, 5.0)  # inches: 800 x 500 px
_CURVES_FIGSIZE = (13.0, 5.0)  # two panels plus an outside legend: 1300 x 500 px
_LOG_SIZE_SPAN = 10.0  # log x for sizes once the largest is this many times the smallest

# Fixed colour and marker per precision/runtime, so every figure reads the same way.
_SETTING_STYLES = {
    ("fp32", "torch"): ("tab:blue", "o"),
    ("fp32", "onnxruntime"): ("tab:orange", "s"),
    ("int8", "onnxruntime"): ("tab:green", "^"),
}
_SPARE_STYLES = (("tab:red", "D"), ("tab:purple", "v"), ("tab:brown", "P"), ("tab:gray", "X"))

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


# --------------------------------------------------------------------------- summary table


def build_summary(metric_paths: Iterable[PathLike]) -> pd.DataFrame:
    """One row per variant with the raw metrics and the derived comparisons with the baseline."""
    records, sources = [], {}
    for path in map(Path, metric_paths):
        record = _read_metrics(path)
        variant = "/".join((record["model"], record["precision"], record["runtime"]))
        if variant in sources:
            raise ValueError(f"variant {variant} appears in both {sources[variant]} and {path}")
        sources[variant] = path
        records.append({"variant": variant, **record})
    if not records:
        raise ValueError("no metrics files given")
    records.sort(key=_sort_key)
    summary = pd.DataFrame(records, columns=["variant", *METRIC_KEYS])
    return _add_derived(summary)[list(SUMMARY_COLUMNS)]


def write_summary_csv(summary: pd.DataFrame, path: PathLike) -> None:
    path = _prepare(path)
    summary.to_csv(path, index=False)


def _read_metrics(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in METRIC_KEYS if key not in record]
    if missing:
        raise ValueError(f"{path}: missing required key(s): {', '.join(missing)}")
    return {key: _coerce(record[key], kind, path, key) for key, kind in _METRIC_TYPES.items()}


def _coerce(value: object, kind: type, path: Path, key: str) -> str | int | float:
    # bool is an int subclass; a true/false in a numeric field is a bug upstream, not a number.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        ok = isinstance(value, str) and value != ""
    elif kind is int:
        ok = number and math.isfinite(value) and float(value).is_integer()
    else:
        ok = number and math.isfinite(value)
    if not ok:
        raise ValueError(f"{path}: key {key!r} is {value!r}, expected a {kind.__name__}")
    return kind(value)


def _rank(value: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def _setting_key(setting: tuple[str, str]) -> tuple:
    return (_rank(setting[0], _PRECISION_ORDER), _rank(setting[1], _RUNTIME_ORDER))


def _sort_key(record: dict) -> tuple:
    setting = (record["precision"], record["runtime"])
    return (record["prune_rate"], *_setting_key(setting), record["model"])


def _add_derived(summary: pd.DataFrame) -> pd.DataFrame:
    base = summary[summary["model"] == BASELINE_MODEL].set_index(["precision", "runtime"])
    settings = list(zip(summary["precision"], summary["runtime"]))
    fp32_same_runtime = [("fp32", runtime) for _, runtime in settings]
    needed = set(settings) | set(fp32_same_runtime) | {REFERENCE_SETTING}
    missing = sorted(needed - set(base.index), key=_setting_key)
    if missing:
        raise ValueError(
            f"no {BASELINE_MODEL!r} metrics for {', '.join('/'.join(s) for s in missing)}: every "
            "variant is compared with the baseline at its own precision/runtime, with baseline "
            "fp32 in its runtime and with baseline fp32/torch"
        )
    reference = base.loc[REFERENCE_SETTING]
    same = base.loc[settings]
    fp32 = base.loc[fp32_same_runtime]
    return summary.assign(
        accuracy_delta_pp=summary["accuracy"].to_numpy() - same["accuracy"].to_numpy(),
        accuracy_delta_pp_vs_fp32_torch=summary["accuracy"] - reference["accuracy"],
        size_ratio=summary["size_bytes"] / reference["size_bytes"],
        speedup_batch64=fp32["latency_batch64_ms"].to_numpy() / summary["latency_batch64_ms"].to_numpy(),
    )


def _settings(summary: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(set(zip(summary["precision"], summary["runtime"])), key=_setting_key)


def _rows(summary: pd.DataFrame, setting: tuple[str, str]) -> pd.DataFrame:
    precision, runtime = setting
    return summary[(summary["precision"] == precision) & (summary["runtime"] == runtime)]


def _baseline_row(summary: pd.DataFrame, setting: tuple[str, str]) -> pd.Series:
    rows = _rows(summary, setting)
    return rows[rows["model"] == BASELINE_MODEL].iloc[0]


# --------------------------------------------------------------------------- figures


def plot_accuracy_vs_rate(summary: pd.DataFrame, path: PathLike) -> None:
    """Test accuracy against prune rate, one line per precision/runtime."""
    fig = _new_figure(_FIGSIZE)
    ax = fig.add_subplot()
    styles = _setting_styles(summary)
    for i, (setting, (color, marker)) in enumerate(styles.items()):
        rows = _rows(summary, setting).sort_values("prune_rate")
        # fp32 in torch and in ONNX Runtime should score the same, so their lines coincide: hollow
        # markers shrinking line by line and a dashed line for every runtime but torch keep each visible.
        ax.plot(
            rows["prune_rate"], rows["accuracy"], color=color, marker=marker, markerfacecolor="none",
            markersize=11 - 2 * min(i, 3), linestyle="-" if setting[1] == "torch" else "--",
            label=" / ".join(setting),
        )
    ax.set_xticks(sorted(summary["prune_rate"].unique()))
    ax.set(title="Test accuracy vs prune rate", xlabel="prune rate (fraction)",
           ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(title="precision / runtime")
    _save(fig, path)


def plot_accuracy_vs_size(summary: pd.DataFrame, path: PathLike) -> None:
    """Test accuracy against serialized size: a marker per precision/runtime, a label per model."""
    fig = _new_figure(_FIGSIZE)
    ax = fig.add_subplot()
    for i, (setting, (color, marker)) in enumerate(_setting_styles(summary).items()):
        rows = _rows(summary, setting)
        ax.scatter(rows["size_bytes"], rows["accuracy"], color=color, marker=marker, s=50,
                   label=" / ".join(setting))
        # fp32 files in two formats often sit side by side at the same accuracy: labelling
        # alternate settings above and below keeps their labels apart.
        offset, va = ((5, 5), "bottom") if i % 2 == 0 else ((5, -5), "top")
        for model, x, y in zip(rows["model"], rows["size_bytes"], rows["accuracy"]):
            ax.annotate(model, (x, y), xytext=offset, textcoords="offset points", fontsize=8, va=va)
    ax.margins(x=0.08)  # room for the labels of the outermost points
    sizes = summary["size_bytes"]
    log_x = sizes.min() > 0 and sizes.max() >= _LOG_SIZE_SPAN * sizes.min()
    if log_x:
        ax.set_xscale("log")
    xlabel = "serialized size (bytes, log scale)" if log_x else "serialized size (bytes)"
    ax.set(title="Test accuracy vs serialized size", xlabel=xlabel, ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(title="precision / runtime")
    _save(fig, path)


def plot_training_curves(histories: Mapping[str, PathLike], path: PathLike) -> None:
    """Loss and accuracy per epoch, train dashed and validation solid, one colour per model."""
    if not histories:
        raise ValueError("no training histories given")
    fig = _new_figure(_CURVES_FIGSIZE)
    loss_ax, acc_ax = fig.subplots(1, 2)
    handles = []
    for i, (model, history_path) in enumerate(histories.items()):
        history = _read_history(Path(history_path))
        color = f"C{i % 10}"
        for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            ax.plot(history["epoch"], history[f"train_{metric}"], color=color, linestyle="--")
            ax.plot(history["epoch"], history[f"val_{metric}"], color=color, linestyle="-")
        handles.append(Line2D([], [], color=color, label=model))
    handles += [
        Line2D([], [], color="black", linestyle="--", label="train"),
        Line2D([], [], color="black", linestyle="-", label="validation"),
    ]
    loss_ax.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy (nats)")
    acc_ax.set(title="Accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle("Training curves (pruned models: fine-tuning epochs)")
    fig.legend(handles=handles, loc="outside right upper")
    _save(fig, path)


def _read_history(path: Path) -> pd.DataFrame:
    history = pd.read_csv(path)
    missing = [column for column in _HISTORY_COLUMNS if column not in history.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s): {', '.join(missing)}")
    if history.empty:
        raise ValueError(f"{path}: no epochs recorded")
    return history


def _new_figure(figsize: tuple[float, float]) -> Figure:
    # A bare Figure is never registered with pyplot, so no global state or display backend is
    # involved and there is nothing to close: it is freed with its last reference.
    return Figure(figsize=figsize, dpi=_DPI, layout="constrained")


def _save(fig: Figure, path: PathLike) -> None:
    fig.savefig(_prepare(path), format="png", dpi=_DPI)


def _setting_styles(summary: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str]]:
    styles, spare = {}, 0
    for setting in _settings(summary):
        if setting in _SETTING_STYLES:
            styles[setting] = _SETTING_STYLES[setting]
        else:
            styles[setting] = _SPARE_STYLES[spare % len(_SPARE_STYLES)]
            spare += 1
    return styles


# --------------------------------------------------------------------------- Markdown report


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
    splits = [f"{label} {meta[key]}" for key, label in _SPLIT_KEYS if key in meta]
    if splits:
        lines.append("- split sizes: " + ", ".join(splits))
    shown = {"source", "classes", *(key for key, _ in _SHAPE_KEYS + _SPLIT_KEYS)}
    for key, value in meta.items():
        if key not in shown and isinstance(value, str | int | float | bool):
            lines.append(f"- {key}: {value}")
    return lines or ["- no metadata recorded"]


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
    n_test = f" ({meta['n_test']} examples)" if "n_test" in meta else ""
    lines = [
        "## How the numbers were measured",
        "",
        f"- Accuracy and loss are on the held-out test split{n_test}. The test split was never used "
        "for selection: training, fine-tuning and every choice between models relied on the "
        "training and validation splits only.",
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


def _prepare(path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
