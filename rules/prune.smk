# Structured (channel) pruning and its fine-tuning, in one job: an iterative schedule
# alternates the two, and a one-shot cut alone costs less than starting a process.
rule prune:
    input:
        unpack(
            lambda wildcards: {
                "model": STUDY.trained_model(wildcards.run, "baseline"),
                "dataset": dataset(wildcards),
            }
            | STUDY.teacher_inputs(wildcards.run, wildcards.model)
            | (
                {"sensitivity": STUDY.sensitivity_curve(wildcards.run)}
                if parse_model(wildcards.model).family == "sensitivity"
                else {}
            )
        ),
    output:
        model="results/prune/{run}/{model}/model.pt",
        history="results/prune/{run}/{model}/history.csv",
        record="results/prune/{run}/{model}/pruning.json",
        metrics="results/prune/{run}/{model}/metrics.json",
        evaluation="results/prune/{run}/{model}/evaluation.json",
        predictions="results/prune/{run}/{model}/predictions.csv",
    log:
        "logs/prune/{run}/{model}.log",
    benchmark:
        "benchmarks/prune/{run}/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("prune"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        min_channels=config["prune"]["min_channels"],
        not_prunable=config["model"]["not_prunable"],
        training=stable_setting(config["finetune"]),
        distillation=distillation,
        device=config["device"],
        resume=f"{RESUME_DIR}/{{run}}/prune/{{model}}",
    script:
        "../scripts/prune.py"


# Each block pruned alone over a grid of rates, without fine-tuning: validation accuracy curves.
rule sensitivity:
    input:
        model=rules.train_baseline.output.model,
        dataset=dataset,
    output:
        curves="results/sensitivity/{run}/curves.csv",
    log:
        "logs/sensitivity/{run}.log",
    benchmark:
        "benchmarks/sensitivity/{run}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("sensitivity"),
        sensitivity=stable_setting(config["prune"]["sensitivity"]),
        not_prunable=config["model"]["not_prunable"],
        seed=run_seed,
    script:
        "../scripts/sensitivity.py"


# Unstructured magnitude pruning: masks held at zero through fine-tuning, then made permanent.
rule sparsify:
    input:
        unpack(teacher),
        model=rules.train_baseline.output.model,
        dataset=dataset,
    output:
        model="results/sparsify/{run}/{model}/model.pt",
        history="results/sparsify/{run}/{model}/history.csv",
        record="results/sparsify/{run}/{model}/sparsity.json",
        metrics="results/sparsify/{run}/{model}/metrics.json",
        evaluation="results/sparsify/{run}/{model}/evaluation.json",
        predictions="results/sparsify/{run}/{model}/predictions.csv",
    log:
        "logs/sparsify/{run}/{model}.log",
    benchmark:
        "benchmarks/sparsify/{run}/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("sparsify"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        not_prunable=config["model"]["not_prunable"],
        training=stable_setting(config["finetune"]),
        distillation=distillation,
        device=config["device"],
        resume=f"{RESUME_DIR}/{{run}}/sparsify/{{model}}.pt",
    script:
        "../scripts/sparsify.py"


# The control of "Rethinking the Value of Network Pruning": the pruned architecture, trained
# from random initialisation with the baseline's settings and epoch budget.
rule from_scratch:
    input:
        unpack(teacher),
        dataset=dataset,
    output:
        model="results/from_scratch/{run}/{model}/model.pt",
        history="results/from_scratch/{run}/{model}/history.csv",
        metrics="results/from_scratch/{run}/{model}/metrics.json",
        evaluation="results/from_scratch/{run}/{model}/evaluation.json",
        predictions="results/from_scratch/{run}/{model}/predictions.csv",
    log:
        "logs/from_scratch/{run}/{model}.log",
    benchmark:
        "benchmarks/from_scratch/{run}/{model}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("from_scratch"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        arch=config["model"]["arch"],
        blocks=stable_setting(config["model"]["blocks"]),
        not_prunable=config["model"]["not_prunable"],
        training=stable_setting(config["train"]),
        distillation=distillation,
        device=config["device"],
        resume=f"{RESUME_DIR}/{{run}}/from_scratch/{{model}}.pt",
    script:
        "../scripts/from_scratch.py"
