from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.data import load_dataset
from prunequant.io import write_json
from prunequant.latency import time_variants
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0]):
    dataset = load_dataset(snakemake.input.dataset)
    timings = time_variants(
        dict(zip(snakemake.params.variants, snakemake.input.artifacts, strict=True)),
        runtime=snakemake.wildcards.runtime,
        references=snakemake.params.references,
        n_channels=dataset.n_channels,
        length=dataset.length,
        seed=snakemake.params.seed,
        **snakemake.params.latency,
    )
    write_json(timings, snakemake.output.latency)
