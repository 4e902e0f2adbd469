rule prepare_data:
    input:
        code=code("prepare_data"),
    output:
        dataset="results/prepare_data/dataset.npz",
        metadata="results/prepare_data/dataset.json",
    params:
        data=setting(config["data"]),
        seed=config["seed"],
    log:
        "logs/prepare_data.log",
    benchmark:
        "benchmarks/prepare_data.tsv"
    conda:
        "../envs/prunequant.yaml"
    script:
        "../scripts/prepare_data.py"
