# Every variant of one runtime, timed in interleaved rounds in one job that holds every
# core, so no other job runs beside it and load changes hit all variants alike.
rule time_latency:
    input:
        artifacts=lambda wildcards: list(
            STUDY.timed_artifacts(wildcards.runtime).values()
        ),
        dataset=STUDY.dataset_path(STUDY.first_run),
    output:
        latency="results/latency/{runtime}.json",
    log:
        "logs/time_latency/{runtime}.log",
    benchmark:
        "benchmarks/time_latency/{runtime}.tsv"
    conda:
        "../envs/prunequant.yaml"
    threads: lambda wildcards: workflow.cores
    params:
        code=code("time_latency"),
        variants=lambda wildcards: list(STUDY.timed_artifacts(wildcards.runtime)),
        references=lambda wildcards: STUDY.latency_references(wildcards.runtime),
        latency=stable_setting(config["latency"]),
        seed=config["seeds"][0],
    script:
        "../scripts/time_latency.py"
