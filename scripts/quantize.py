from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.data import load_dataset
from prunequant.quantize.recipes import quantize_by_recipe
from prunequant.workflow.jobs import job_logging
from prunequant.workflow.scoring import score_stage_output

with job_logging(snakemake.log[0], threads=snakemake.threads):
    quantize_by_recipe(
        snakemake.params.recipe,
        dataset=load_dataset(snakemake.input.dataset),
        fp32_path=snakemake.input.onnx,
        int8_path=snakemake.output.onnx,
        record_path=snakemake.output.record,
        seed=snakemake.params.variant["seed"],
    )
    # Every stage scores what it made: no job exists only to evaluate.
    score_stage_output(
        snakemake, artifact_path=snakemake.output.onnx, parent_model_path=snakemake.input.parent
    )
