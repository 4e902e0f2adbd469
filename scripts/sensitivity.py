from prunequant.jobs import job_logging
from prunequant.training import run_sensitivity

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
