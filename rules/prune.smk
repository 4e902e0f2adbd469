rule prune:
    input:
        model="results/train_baseline/model.pt",
        code=code("prune"),
    output:
        model="results/prune/{model}/model.pt",
        record="results/prune/{model}/pruning.json",
    log:
        "logs/prune/{model}.log",
    benchmark:
        "benchmarks/prune/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        rate=prune_rate,
        criterion=config["prune"]["criterion"],
    script:
        "../scripts/prune.py"
