from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.quantize.export import export_onnx
from prunequant.quantize.fold import deployment_model
from prunequant.workflow.jobs import job_logging
from prunequant.workflow.scoring import score_stage_output

with job_logging(snakemake.log[0], threads=snakemake.threads):
    model, _ = load_model(snakemake.input.model)
    dataset = load_dataset(snakemake.input.dataset)
    export_onnx(
        deployment_model(model), snakemake.output.onnx, n_channels=dataset.n_channels, length=dataset.length
    )
    # Every stage scores what it made: no job exists only to evaluate.
    score_stage_output(
        snakemake, artifact_path=snakemake.output.onnx, parent_model_path=snakemake.input.model
    )
