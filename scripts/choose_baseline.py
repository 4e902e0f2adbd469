from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.io import write_json
from prunequant.tuning import choose_candidate, tuning_table
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0]):
    layout = snakemake.params.layout
    table = tuning_table(layout["predictions"], layout["evaluation"])
    chosen = choose_candidate(table)
    write_json(
        {
            "chosen": chosen,
            "chosen_on": "mean validation accuracy over runs (ties: lower validation loss)",
            "candidates": table[["candidate", "val_accuracy", "val_loss", "runs"]].to_dict("records"),
        },
        snakemake.output.choice,
    )
