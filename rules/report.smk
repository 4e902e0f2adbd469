rule report:
    input:
        metrics=evaluation_metrics(),
        histories=list(training_histories().values()),
        dataset_metadata="results/prepare_data/dataset.json",
        code=code("report"),
    output:
        summary=report("results/report/summary.csv", caption="../captions/summary.rst", category="Summary"),
        markdown="results/report/report.md",
        accuracy_vs_rate=report("results/report/figures/accuracy_vs_rate.png", caption="../captions/accuracy_vs_rate.rst", category="Figures"),
        accuracy_vs_size=report("results/report/figures/accuracy_vs_size.png", caption="../captions/accuracy_vs_size.rst", category="Figures"),
        training_curves=report("results/report/figures/training_curves.png", caption="../captions/training_curves.rst", category="Figures"),
    params:
        history_names=list(training_histories()),
        accuracy_budget_pp=config["report"]["accuracy_budget_pp"],
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../envs/prunequant.yaml"
    script:
        "../scripts/report.py"
