rule report:
    input:
        metrics=evaluation_files("evaluation.json"),
        predictions=evaluation_files("predictions.csv"),
        latency=expand("results/latency/{runtime}.json", runtime=LATENCY_RUNTIMES),
        histories=list(training_histories().values()),
        quantization=list(quantization_records().values()),
        sensitivity=list(sensitivity_curves().values()),
        datasets=expand("results/data/{split}/dataset.json", split=SPLITS),
        tuning=[
            path
            for split, layout in TUNING_LAYOUT.items()
            for path in [layout["choice"], *tuning_files(split)]
        ],
    output:
        runs=report(
            "results/report/runs.csv",
            caption="../captions/runs.rst",
            category="Tables",
        ),
        summary=report(
            "results/report/summary.csv",
            caption="../captions/summary.rst",
            category="Tables",
        ),
        latency="results/report/latency.csv",
        provenance="results/report/provenance.json",
        markdown="results/report/report.md",
        figures=[
            report(
                f"results/report/figures/{name}.png",
                caption=f"../captions/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("report"),
        histories=list(training_histories()),
        quantization=list(quantization_records()),
        sensitivity=list(sensitivity_curves()),
        figure_names=FIGURES,
        latency_runtimes=LATENCY_RUNTIMES,
        settings=setting(config["report"]),
        config=setting(config),
        runs=RUNS,
        tuning=TUNING_LAYOUT,
    script:
        "../scripts/report.py"
