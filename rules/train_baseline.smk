rule train_baseline:
    input:
        dataset="results/prepare_data/dataset.npz",
        code=code("train_baseline"),
    output:
        model="results/train_baseline/model.pt",
        history="results/train_baseline/history.csv",
        metrics="results/train_baseline/metrics.json",
    log:
        "logs/train_baseline.log",
    benchmark:
        "benchmarks/train_baseline.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        blocks=setting(config["model"]["blocks"]),
        training=setting(config["train"]),
        seed=config["seed"],
        device=config["device"],
        resume=f"{RESUME_DIR}/train_baseline/baseline.pt",
    script:
        "../scripts/train_baseline.py"
