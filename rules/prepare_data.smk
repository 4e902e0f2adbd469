rule prepare_data:
    input:
        data=data_files(config["data"]),
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
        data=setting(active_data_settings(config["data"])),
        seed=config["seed"],
    script:
        "../scripts/prepare_data.py"
