# Each evaluation takes every core so that no other job runs beside its latency timing.
rule evaluate:
    input:
        artifact=evaluated_artifact,
        parent=trained_model,
        dataset="results/prepare_data/dataset.npz",
        code=code("evaluate"),
    output:
        metrics="results/evaluate/{model}/{precision}_{runtime}/metrics.json",
        predictions="results/evaluate/{model}/{precision}_{runtime}/predictions.csv",
    log:
        "logs/evaluate/{model}/{precision}_{runtime}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{precision}_{runtime}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: lambda wildcards: workflow.cores
    params:
        prune_rate=prune_rate,
        evaluation=setting(config["evaluate"]),
    script:
        "../scripts/evaluate.py"
