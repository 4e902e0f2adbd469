from prunequant.jobs import job_logging, write_json
from prunequant.tuning import choose_candidate, tuning_table

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
