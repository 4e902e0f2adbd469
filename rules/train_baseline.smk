rule train_baseline:
    input:
        dataset="results/prepare_data/dataset.npz",
        code=code("train_baseline"),
    output:
        model="results/train_baseline/model.pt",
        history="results/train_baseline/history.csv",
        metrics="results/train_baseline/metrics.json",
    params:
        blocks=setting(config["model"]["blocks"]),
        training=setting(config["train"]),
        seed=config["seed"],
        device=config["device"],
        resume=f"{RESUME_DIR}/train_baseline/baseline.pt",
    log:
        "logs/train_baseline.log",
    benchmark:
        "benchmarks/train_baseline.tsv"
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/prunequant.yaml"
    script:
        "../scripts/train_baseline.py"
