from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from pathlib import Path

from prunequant.report.build import ReportInputs, build_report
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0]):
    files, params, out = snakemake.input, snakemake.params, snakemake.output
    inputs = ReportInputs(
        metric_paths=files.metrics,
        latency_paths=dict(zip(params.latency_runtimes, files.latency, strict=True)),
        histories=dict(zip(params.histories, files.histories, strict=True)),
        training_metrics=files.training_metrics,
        quantization_records=dict(zip(params.quantization, files.quantization, strict=True)),
        sensitivity_curves=dict(zip(params.sensitivity, files.sensitivity, strict=True)),
        sensitivity_records=dict(zip(params.sensitivity_records, files.sensitivity_records, strict=True)),
        dataset_metadata=files.datasets,
        tuning=params.tuning,
    )
    build_report(
        inputs,
        results_dir="results",
        settings=params.settings,
        config=params.config,
        run_names=params.runs,
        workflow_dir=Path(snakemake.scriptdir).parent,
        captions_dir=Path(snakemake.scriptdir).parent / "captions",
        out={
            key: out[key]
            for key in ("runs", "summary", "comparisons", "latency", "latency_all", "provenance", "markdown")
        },
        figure_paths=dict(zip(params.figure_names, out.figures, strict=True)),
    )
