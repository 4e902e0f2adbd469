from pathlib import Path

from prunequant.jobs import job_logging, read_json
from prunequant.report import (
    build_summary,
    plot_accuracy_vs_rate,
    plot_accuracy_vs_size,
    plot_training_curves,
    write_report,
    write_summary_csv,
)

with job_logging(snakemake.log[0]):
    out = snakemake.output
    summary = build_summary(snakemake.input.metrics)
    write_summary_csv(summary, out.summary)
    plot_accuracy_vs_rate(summary, out.accuracy_vs_rate)
    plot_accuracy_vs_size(summary, out.accuracy_vs_size)
    plot_training_curves(
        dict(zip(snakemake.params.history_names, snakemake.input.histories, strict=True)), out.training_curves
    )
    report_dir = Path(out.markdown).parent
    figures = {
        name: Path(out[name]).relative_to(report_dir)
        for name in ("accuracy_vs_rate", "accuracy_vs_size", "training_curves")
    }
    write_report(
        summary,
        figures=figures,
        dataset_meta=read_json(snakemake.input.dataset_metadata),
        out_path=out.markdown,
        accuracy_budget_pp=snakemake.params.accuracy_budget_pp,
    )
