"""Figures of the summary table and of the training histories, saved as PNG files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from prunequant.report.summary import PathLike, _prepare, _rows, _settings

__all__ = [
    "plot_accuracy_vs_rate",
    "plot_accuracy_vs_size",
    "plot_training_curves",
]

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
            rows["prune_rate"],
            rows["accuracy"],
            color=color,
            marker=marker,
            markerfacecolor="none",
            markersize=11 - 2 * min(i, 3),
            linestyle="-" if setting[1] == "torch" else "--",
            label=" / ".join(setting),
        )
    ax.set_xticks(sorted(summary["prune_rate"].unique()))
    ax.set(title="Test accuracy vs prune rate", xlabel="prune rate (fraction)", ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(title="precision / runtime")
    _save(fig, path)


def plot_accuracy_vs_size(summary: pd.DataFrame, path: PathLike) -> None:
    """Test accuracy against serialized size: a marker per precision/runtime, a label per model."""
    fig = _new_figure(_FIGSIZE)
    ax = fig.add_subplot()
    for i, (setting, (color, marker)) in enumerate(_setting_styles(summary).items()):
        rows = _rows(summary, setting)
        ax.scatter(
            rows["size_bytes"], rows["accuracy"], color=color, marker=marker, s=50, label=" / ".join(setting)
        )
        # fp32 files in two formats often sit side by side at the same accuracy: labelling
        # alternate settings above and below keeps their labels apart.
        offset, va = ((5, 5), "bottom") if i % 2 == 0 else ((5, -5), "top")
        for model, x, y in zip(rows["model"], rows["size_bytes"], rows["accuracy"], strict=True):
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
