from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.distill import Teacher
from prunequant.stages.qat import QatRecipe, run_qat
from prunequant.workflow.jobs import job_logging
from prunequant.workflow.scoring import score_stage_output

with job_logging(snakemake.log[0], threads=snakemake.threads):
    settings = dict(snakemake.params.recipe)
    settings.pop("method")
    settings.pop("distill", None)  # its settings arrive as params.distillation
    run_qat(
        model_path=snakemake.input.model,
        dataset_path=snakemake.input.dataset,
        recipe=QatRecipe(**settings),
        seed=snakemake.params.variant["seed"],
        device=snakemake.params.device,
        checkpoint_path=snakemake.output.checkpoint,
        onnx_path=snakemake.output.onnx,
        history_path=snakemake.output.history,
        record_path=snakemake.output.record,
        resume_path=snakemake.params.resume,
        teacher=Teacher.of(snakemake.params.distillation, snakemake.input.get("teacher")),
    )
    # Every stage scores what it made: no job exists only to evaluate.
    score_stage_output(
        snakemake, artifact_path=snakemake.output.onnx, parent_model_path=snakemake.input.model
    )
