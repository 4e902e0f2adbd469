rule train_baseline:
    input:
        dataset=dataset,
    output:
        **{
            key: f"results/train_baseline/{{run}}/{name}"
            for key, name in CANDIDATE_OUTPUTS.items()
        },
    log:
        "logs/train_baseline/{run}.log",
    benchmark:
        "benchmarks/train_baseline/{run}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: 1
    resources:
        gpu=TRAINING_GPUS,
    params:
        code=code("train_baseline"),
        variant=variant("fp32_torch"),
        batch_size=config["evaluate"]["batch_size"],
        arch=config["model"]["arch"],
        blocks=stable_setting(config["model"]["blocks"]),
        training=stable_setting(config["train"]),
        device=config["device"],
        resume=f"{RESUME_DIR}/{{run}}/train_baseline.pt",
    script:
        "../scripts/train_baseline.py"


# ----------------------------------------------------------------------------- baseline tuning
# With a `tune` grid, every (batch size, learning rate) point is trained per run as its own job;
# each data split's runs share one choice, made on validation accuracy, and the chosen point's
# files become each run's baseline, which pruning and quantization start from.
if STUDY.tuning:

    use rule train_baseline as train_candidate with:
        output:
            **{
                key: f"results/tune/{{run}}/{{candidate}}/{name}"
                for key, name in CANDIDATE_OUTPUTS.items()
            },
        log:
            "logs/tune/{run}/{candidate}.log",
        benchmark:
            "benchmarks/tune/{run}/{candidate}.tsv"
        params:
            training=lambda wildcards: stable_setting(
                candidate_training(wildcards.candidate, config["train"])
            ),
            resume=f"{RESUME_DIR}/{{run}}/tune/{{candidate}}.pt",

    rule choose_baseline:
        input:
            candidates=lambda wildcards: STUDY.tuning_files(wildcards.split),
        output:
            choice="results/tune/{split}/choice.json",
        log:
            "logs/tune/{split}/choose_baseline.log",
        benchmark:
            "benchmarks/tune/{split}/choose_baseline.tsv"
        conda:
            "../envs/prunequant.yaml"
        params:
            code=code("choose_baseline"),
            layout=lambda wildcards: STUDY.tuning_layout[wildcards.split],
        script:
            "../scripts/choose_baseline.py"

    rule adopt_baseline:
        input:
            choice=lambda wildcards: STUDY.choice_file(STUDY.split_of(wildcards.run)),
            candidates=lambda wildcards: [
                path
                for files in STUDY.candidate_files(wildcards.run).values()
                for path in files.values()
            ],
        output:
            **{
                key: f"results/train_baseline/{{run}}/{name}"
                for key, name in CANDIDATE_OUTPUTS.items()
            },
        log:
            "logs/adopt_baseline/{run}.log",
        localrule: True
        conda:
            "../envs/prunequant.yaml"
        params:
            code=code("adopt_baseline"),
            candidates=lambda wildcards: STUDY.candidate_files(wildcards.run),
        script:
            "../scripts/adopt_baseline.py"

    # Both make a run's baseline files; with a grid, they come from the choice.
    ruleorder: adopt_baseline > train_baseline
