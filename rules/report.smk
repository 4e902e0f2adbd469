rule report:
    input:
        metrics=STUDY.evaluation_files("evaluation.json"),
        predictions=STUDY.evaluation_files("predictions.csv"),
        latency=expand("results/latency/{runtime}.json", runtime=LATENCY_RUNTIMES),
        histories=list(STUDY.training_histories().values()),
        training_metrics=STUDY.training_metrics(),
        quantization=list(STUDY.quantization_records().values()),
        sensitivity=list(STUDY.sensitivity_curves().values()),
        sensitivity_records=list(STUDY.sensitivity_records().values()),
        datasets=expand("results/data/{split}/dataset.json", split=STUDY.splits),
        tuning=[
            path
            for split, layout in STUDY.tuning_layout.items()
            for path in [layout["choice"], *STUDY.tuning_files(split)]
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
        comparisons=report(
            "results/report/comparisons.csv",
            caption="../captions/comparisons.rst",
            category="Tables",
        ),
        latency="results/report/latency.csv",
        latency_all="results/report/latency_all.csv",
        provenance="results/report/provenance.json",
        markdown="results/report/report.md",
        figures=[
            report(
                f"results/report/figures/{name}.png",
                caption=f"../captions/{name}.rst",
                category="Figures",
            )
            for name in STUDY.figures
        ],
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../envs/prunequant.yaml"
    params:
        code=code("report"),
        # The figures' titles and captions live with the workflow, like its code: their digests
        # rerun the report when one is edited.
        captions=caption_digests(),
        histories=list(STUDY.training_histories()),
        quantization=list(STUDY.quantization_records()),
        sensitivity=list(STUDY.sensitivity_curves()),
        sensitivity_records=list(STUDY.sensitivity_records()),
        figure_names=STUDY.figures,
        latency_runtimes=LATENCY_RUNTIMES,
        settings=stable_setting(config["report"]),
        config=stable_setting(config),
        runs=STUDY.runs,
        tuning=STUDY.tuning_layout,
    script:
        "../scripts/report.py"
