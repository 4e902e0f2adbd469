from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.data import load_dataset
from prunequant.evaluation import score_stage_output
from prunequant.quantize.partial import quantize_partial
from prunequant.quantize.ptq import quantize_ptq
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    dataset = load_dataset(snakemake.input.dataset)
    settings = dict(snakemake.params.recipe)
    method = settings.pop("method")
    common = {
        "fp32_path": snakemake.input.onnx,
        "int8_path": snakemake.output.onnx,
        "record_path": snakemake.output.record,
        "train_inputs": dataset.X_train,
        "seed": snakemake.params.variant["seed"],
    }
    if method == "partial":
        # Which layers stay float is chosen on validation data only; test never reaches this job.
        quantize_partial(**common, val_inputs=dataset.X_val, val_labels=dataset.y_val, **settings)
    else:
        quantize_ptq(**common, **settings)
    # Every stage scores what it made: no job exists only to evaluate.
    score_stage_output(
        snakemake, artifact_path=snakemake.output.onnx, parent_model_path=snakemake.input.parent
    )
