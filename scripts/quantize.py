from prunequant.data import load_dataset
from prunequant.jobs import job_logging
from prunequant.quantize import quantize_onnx_model

with job_logging(snakemake.log[0], threads=snakemake.threads):
    quantize_onnx_model(
        fp32_path=snakemake.input.onnx,
        int8_path=snakemake.output.onnx,
        record_path=snakemake.output.record,
        train_inputs=load_dataset(snakemake.input.dataset).X_train,
        seed=snakemake.params.seed,
        **snakemake.params.quantize,
    )
