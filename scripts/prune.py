from prunequant.checkpoint import load_model, save_model
from prunequant.jobs import job_logging, write_json
from prunequant.prune import prune_channels

with job_logging(snakemake.log[0], threads=snakemake.threads):
    model, metadata = load_model(snakemake.input.model)
    pruned, record = prune_channels(model, snakemake.params.rate, snakemake.params.criterion)
    save_model(pruned, snakemake.output.model, dict(metadata, pruning=record))
    write_json(record, snakemake.output.record)
    print(f"Pruned {record['parameters_before']} -> {record['parameters_after']} parameters")
