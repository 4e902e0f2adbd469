from prunequant.checkpoint import load_model
from prunequant.data import load_dataset
from prunequant.jobs import job_logging
from prunequant.quantize import deployment_model, export_onnx

with job_logging(snakemake.log[0], threads=snakemake.threads):
    model, _ = load_model(snakemake.input.model)
    dataset = load_dataset(snakemake.input.dataset)
    export_onnx(
        deployment_model(model), snakemake.output.onnx, n_channels=dataset.n_channels, length=dataset.length
    )
