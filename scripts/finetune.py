from prunequant.jobs import job_logging
from prunequant.training import run_training

with job_logging(snakemake.log[0], threads=snakemake.threads):
    run_training(
        dataset_path=snakemake.input.dataset,
        init_model_path=snakemake.input.model,
        training=snakemake.params.training,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        metrics_path=snakemake.output.metrics,
        resume_path=snakemake.params.resume,
    )
