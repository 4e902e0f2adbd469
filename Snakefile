# prunequant: train a 1D CNN, compress it every configured way (channel and weight pruning,
# post-training and quantization-aware int8), evaluate every variant over several seeds and
# report what each method cost and bought, with intervals and a recommendation made on validation.
#
#   snakemake --cores 4 --resources gpu=1      # run everything
#   snakemake -n                               # show what would run

from pathlib import Path

# The defaults ship beside this file, so `--directory elsewhere` still finds them; a
# config.yaml in the working directory (or --configfile) is merged over them.
DEFAULT_CONFIG = Path(workflow.basedir) / "config.yaml"


configfile: DEFAULT_CONFIG


if Path("config.yaml").is_file() and not Path("config.yaml").resolve().samefile(
    DEFAULT_CONFIG
):

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/prepare_data.smk"
include: "rules/train_baseline.smk"
include: "rules/prune.smk"
include: "rules/export_onnx.smk"
include: "rules/quantize.smk"
include: "rules/tflm.smk"
include: "rules/latency.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report/summary.csv",
        "results/report/report.md",
        STUDY.report_figures(),
