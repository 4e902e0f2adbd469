from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from pathlib import Path

from prunequant.report.build import build_report
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0]):
    inputs, params, out = snakemake.input, snakemake.params, snakemake.output
    build_report(
        metric_paths=inputs.metrics,
        results_dir="results",
        latency_paths=dict(zip(params.latency_runtimes, inputs.latency, strict=True)),
        histories=dict(zip(params.histories, inputs.histories, strict=True)),
        training_metrics=inputs.training_metrics,
        quantization_records=dict(zip(params.quantization, inputs.quantization, strict=True)),
        sensitivity_curves=dict(zip(params.sensitivity, inputs.sensitivity, strict=True)),
        sensitivity_records=dict(zip(params.sensitivity_records, inputs.sensitivity_records, strict=True)),
        dataset_metadata=inputs.datasets,
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
        tuning=params.tuning,
    )
