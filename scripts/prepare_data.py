from prunequant.workflow.warmstart import continue_in_warm_process

continue_in_warm_process()  # the rest of this script may run in a fork of a warm process

from prunequant.data import prepare_dataset, save_dataset
from prunequant.workflow.jobs import job_logging

with job_logging(snakemake.log[0]):
    params = snakemake.params
    dataset = prepare_dataset(**params.data, fold=params.fold, split_seed=params.split_seed)
    save_dataset(dataset, snakemake.output.dataset, snakemake.output.metadata)
    print(f"Classes: {dataset.classes}")
    print(f"Shapes: train {dataset.X_train.shape}, val {dataset.X_val.shape}, test {dataset.X_test.shape}")
