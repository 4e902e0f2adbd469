from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.stages.train import run_training
from prunequant.workflow.jobs import job_logging
from prunequant.workflow.scoring import score_stage_output

with job_logging(snakemake.log[0], threads=snakemake.threads):
    run_training(
        dataset_path=snakemake.input.dataset,
        arch=snakemake.params.arch,
        blocks=snakemake.params.blocks,
        training=snakemake.params.training,
        seed=snakemake.params.variant["seed"],
        device=snakemake.params.device,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        metrics_path=snakemake.output.metrics,
        resume_path=snakemake.params.resume,
    )
    # Every stage scores what it made: no job exists only to evaluate.
    score_stage_output(
        snakemake, artifact_path=snakemake.output.model, parent_model_path=snakemake.output.model
    )
