# Structured (channel) pruning and its fine-tuning, in one job: an iterative schedule
# alternates the two, and a one-shot cut alone costs less than starting a process.
rule prune:
    input:
        unpack(
            lambda wildcards: {
                "model": f"results/{wildcards.run}/train_baseline/model.pt",
                "dataset": dataset(wildcards),
            }
            | (
                {"sensitivity": f"results/{wildcards.run}/sensitivity/curves.csv"}
                if parse_model(wildcards.model).family == "sensitivity"
                else {}
            )
        ),
    output:
        model="results/{run}/prune/{model}/model.pt",
        history="results/{run}/prune/{model}/history.csv",
        record="results/{run}/prune/{model}/pruning.json",
        metrics="results/{run}/prune/{model}/metrics.json",
        evaluation="results/{run}/prune/{model}/evaluation.json",
        predictions="results/{run}/prune/{model}/predictions.csv",
    log:
        "logs/{run}/prune/{model}.log",
    benchmark:
        "benchmarks/{run}/prune/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("prune"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        method=method,
        min_channels=config["prune"]["min_channels"],
        not_prunable=config["model"]["not_prunable"],
        training=setting(config["finetune"]),
        seed=run_seed,
        device=config["device"],
        resume=lambda wildcards: f"{RESUME_DIR}/{wildcards.run}/prune/{wildcards.model}",
    script:
        "../scripts/prune.py"


# Each block pruned alone over a grid of rates, without fine-tuning: validation accuracy curves.
rule sensitivity:
    input:
        model="results/{run}/train_baseline/model.pt",
        dataset=dataset,
    output:
        curves="results/{run}/sensitivity/curves.csv",
    log:
        "logs/{run}/sensitivity.log",
    benchmark:
        "benchmarks/{run}/sensitivity.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("sensitivity"),
        sensitivity=setting(config["prune"]["sensitivity"]),
        not_prunable=config["model"]["not_prunable"],
        seed=run_seed,
    script:
        "../scripts/sensitivity.py"


# Unstructured magnitude pruning: masks held at zero through fine-tuning, then made permanent.
rule sparsify:
    input:
        model="results/{run}/train_baseline/model.pt",
        dataset=dataset,
    output:
        model="results/{run}/sparsify/{model}/model.pt",
        history="results/{run}/sparsify/{model}/history.csv",
        record="results/{run}/sparsify/{model}/sparsity.json",
        metrics="results/{run}/sparsify/{model}/metrics.json",
        evaluation="results/{run}/sparsify/{model}/evaluation.json",
        predictions="results/{run}/sparsify/{model}/predictions.csv",
    log:
        "logs/{run}/sparsify/{model}.log",
    benchmark:
        "benchmarks/{run}/sparsify/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("sparsify"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        method=method,
        not_prunable=config["model"]["not_prunable"],
        training=setting(config["finetune"]),
        seed=run_seed,
        device=config["device"],
        resume=lambda wildcards: f"{RESUME_DIR}/{wildcards.run}/sparsify/{wildcards.model}.pt",
    script:
        "../scripts/sparsify.py"


# The control of "Rethinking the Value of Network Pruning": the pruned architecture, trained
# from random initialisation with the baseline's settings and epoch budget.
rule from_scratch:
    input:
        dataset=dataset,
    output:
        model="results/{run}/from_scratch/{model}/model.pt",
        history="results/{run}/from_scratch/{model}/history.csv",
        metrics="results/{run}/from_scratch/{model}/metrics.json",
        evaluation="results/{run}/from_scratch/{model}/evaluation.json",
        predictions="results/{run}/from_scratch/{model}/predictions.csv",
    log:
        "logs/{run}/from_scratch/{model}.log",
    benchmark:
        "benchmarks/{run}/from_scratch/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("from_scratch"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        rate=lambda wildcards: parse_model(wildcards.model).rate,
        arch=config["model"]["arch"],
        blocks=setting(config["model"]["blocks"]),
        not_prunable=config["model"]["not_prunable"],
        training=setting(config["train"]),
        seed=run_seed,
        device=config["device"],
        resume=lambda wildcards: f"{RESUME_DIR}/{wildcards.run}/from_scratch/{wildcards.model}.pt",
    script:
        "../scripts/from_scratch.py"
