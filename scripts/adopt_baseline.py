from prunequant.jobs import job_logging
from prunequant.tuning import adopt_candidate

with job_logging(snakemake.log[0]):
    baseline = dict(snakemake.output.items())
    adopt_candidate(snakemake.input.choice, snakemake.params.candidates, baseline)
