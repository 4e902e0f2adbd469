"""Per-rule totals of Snakemake benchmark files: jobs, seconds (sum, median, max), peak RSS."""

import sys
from pathlib import Path

import pandas as pd

frames = []
for path in sorted(Path(sys.argv[1]).rglob("*.tsv")):
    frame = pd.read_csv(path, sep="\t")
    frame["rule"] = path.relative_to(sys.argv[1]).parts[0].removesuffix(".tsv")
    frames.append(frame)
table = (
    pd.concat(frames)
    .groupby("rule", sort=False)
    .agg(
        jobs=("s", "size"),
        seconds_total=("s", "sum"),
        seconds_median=("s", "median"),
        seconds_max=("s", "max"),
        peak_rss_mb=("max_rss", "max"),
    )
)
order = [
    "prepare_data",
    "train_baseline",
    "prune",
    "finetune",
    "export_onnx",
    "quantize",
    "evaluate",
    "report",
]
table = table.reindex([rule for rule in order if rule in table.index])
print(table.round(2).to_string())
print(f"\nsum of job times: {table.seconds_total.sum():.1f} s over {table.jobs.sum()} jobs")
