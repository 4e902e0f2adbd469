rule finetune:
    input:
        dataset="results/prepare_data/dataset.npz",
        model="results/prune/{model}/model.pt",
        code=code("finetune"),
    output:
        model="results/finetune/{model}/model.pt",
        history="results/finetune/{model}/history.csv",
        metrics="results/finetune/{model}/metrics.json",
    log:
        "logs/finetune/{model}.log",
    benchmark:
        "benchmarks/finetune/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        training=setting(config["finetune"]),
        seed=config["seed"],
        device=config["device"],
        resume=lambda wildcards: f"{RESUME_DIR}/finetune/{wildcards.model}.pt",
    script:
        "../scripts/finetune.py"
