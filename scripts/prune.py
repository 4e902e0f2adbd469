from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.stages.prune import run_structured_pruning
from prunequant.variants import method_settings
from prunequant.workflow.jobs import job_logging
from prunequant.workflow.scoring import score_stage_output

with job_logging(snakemake.log[0], threads=snakemake.threads):
    run_structured_pruning(
        baseline_path=snakemake.input.model,
        dataset_path=snakemake.input.dataset,
        sensitivity_path=snakemake.input.get("sensitivity"),
        method=method_settings(snakemake.params.variant),
        min_channels=snakemake.params.min_channels,
        not_prunable=snakemake.params.not_prunable,
        training=snakemake.params.training,
        seed=snakemake.params.variant["seed"],
        distillation=snakemake.params.distillation,
        teacher_path=snakemake.input.get("teacher"),
        device=snakemake.params.device,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        record_path=snakemake.output.record,
        metrics_path=snakemake.output.metrics,
        resume_dir=snakemake.params.resume,
    )
    # Every stage scores what it made: no job exists only to evaluate.
    score_stage_output(
        snakemake, artifact_path=snakemake.output.model, parent_model_path=snakemake.output.model
    )
