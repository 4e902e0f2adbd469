"""Aggregate per-variant evaluation records into a summary table, figures and a Markdown report.

``summary`` builds the table and its derived columns, ``figures`` draws the plots and ``markdown``
writes the report. Only files and explicit arguments come in; nothing here reads the workflow
config.
"""

from prunequant.report.figures import plot_accuracy_vs_rate, plot_accuracy_vs_size, plot_training_curves
from prunequant.report.markdown import write_report
from prunequant.report.summary import (
    BASELINE_MODEL,
    DERIVED_COLUMNS,
    METRIC_KEYS,
    SUMMARY_COLUMNS,
    build_summary,
    write_summary_csv,
)

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
