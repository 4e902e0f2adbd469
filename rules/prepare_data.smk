rule prepare_data:
    input:
        code=code("prepare_data"),
    output:
        dataset="results/prepare_data/dataset.npz",
        metadata="results/prepare_data/dataset.json",
    log:
        "logs/prepare_data.log",
    benchmark:
        "benchmarks/prepare_data.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        data=setting(config["data"]),
        seed=config["seed"],
    script:
        "../scripts/prepare_data.py"
