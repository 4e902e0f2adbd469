# One prepared dataset per split: the fixed split of every seed run, or one per held-out group.
rule prepare_data:
    input:
        data=data_files(config["data"]),
    output:
        dataset="results/data/{split}/dataset.npz",
        metadata="results/data/{split}/dataset.json",
    log:
        "logs/prepare_data/{split}.log",
    benchmark:
        "benchmarks/prepare_data/{split}.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("prepare_data"),
        data=stable_setting(active_data_settings(config["data"])),
        fold=lambda wildcards: parse_split(wildcards.split)[0],
        split_seed=lambda wildcards: parse_split(wildcards.split)[1],
    script:
        "../scripts/prepare_data.py"
