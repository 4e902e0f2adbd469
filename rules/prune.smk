rule prune:
    input:
        model="results/train_baseline/model.pt",
        code=code("prune"),
    output:
        model="results/prune/{model}/model.pt",
        record="results/prune/{model}/pruning.json",
    params:
        rate=prune_rate,
        criterion=config["prune"]["criterion"],
    log:
        "logs/prune/{model}.log",
    benchmark:
        "benchmarks/prune/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    script:
        "../scripts/prune.py"
