from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.tuning import adopt_candidate
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0]):
    baseline = dict(snakemake.output.items())
    adopt_candidate(snakemake.input.choice, snakemake.params.candidates, baseline)
