from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.stages.sensitivity import run_sensitivity
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    run_sensitivity(
        baseline_path=snakemake.input.model,
        dataset_path=snakemake.input.dataset,
        criterion=snakemake.params.sensitivity["criterion"],
        rates=snakemake.params.sensitivity["rates"],
        not_prunable=snakemake.params.not_prunable,
        seed=snakemake.params.seed,
        curves_path=snakemake.output.curves,
    )
