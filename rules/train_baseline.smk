rule train_baseline:
    input:
        dataset=dataset,
        code=code("train_baseline"),
    output:
        model="results/{run}/train_baseline/model.pt",
        history="results/{run}/train_baseline/history.csv",
        metrics="results/{run}/train_baseline/metrics.json",
        evaluation="results/{run}/train_baseline/evaluation.json",
        predictions="results/{run}/train_baseline/predictions.csv",
    log:
        "logs/{run}/train_baseline.log",
    benchmark:
        "benchmarks/{run}/train_baseline.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        arch=config["model"]["arch"],
        blocks=setting(config["model"]["blocks"]),
        training=setting(config["train"]),
        seed=run_seed,
        device=config["device"],
        resume=lambda wildcards: f"{RESUME_DIR}/{wildcards.run}/train_baseline.pt",
    script:
        "../scripts/train_baseline.py"
