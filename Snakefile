# prunequant: train a depthwise-separable 1D CNN, prune it, fine-tune, quantize to int8,
# evaluate every variant and report what each compression step cost and bought.
#
#   snakemake --cores 4 --resources gpu=1      # run everything
#   snakemake -n                               # show what would run


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/prepare_data.smk"
include: "rules/train_baseline.smk"
include: "rules/prune.smk"
include: "rules/finetune.smk"
include: "rules/export_onnx.smk"
include: "rules/quantize.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report/summary.csv",
        "results/report/report.md",
        report_figures(),
