"""Per-rule totals of Snakemake benchmark files: jobs, seconds (sum, median, max), peak RSS.

    python bench/summarize_benchmarks.py benchmarks

Peak memory is the ``prunequant-peak-memory-mb:`` line of the job's log (``logs/`` next to
``benchmarks/``, same relative path) where there is one: a warm-started job's work runs in a
worker process that Snakemake's ``max_rss`` does not see. Otherwise it is ``max_rss``.

A benchmark path is ``<rule>.tsv`` or ``<rule>/...`` (``<run>/<rule>/...`` in results made before
the stage-first layout): the rule is the first path part that names a workflow script (rule
name = script name), else the rule a known folder holds (``tune/...``: the tuning candidates),
else the first part.
"""

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [path.stem for path in sorted((ROOT / "scripts").glob("*.py"))]
# Pipeline order first; rules not listed here follow in the order they are found.
ORDER = ["prepare_data", "train_candidate", "choose_baseline", "train_baseline", "prune", "sensitivity"]
ORDER += ["sparsify", "from_scratch", "finetune"]
ORDER += ["export_onnx", "quantize", "qat", "evaluate", "time_latency", "report"]


def logged_value(log: Path, prefix: str) -> float | None:
    """The last ``<prefix> <number>`` line of a job log, or None when it has none."""
    if not log.is_file():
        return None
    pattern = re.compile(rf"^{re.escape(prefix)}\s*([0-9.eE+-]+)\s*$", re.MULTILINE)
    matches = pattern.findall(log.read_text(errors="replace"))
    return float(matches[-1]) if matches else None


# Benchmark folders named after a stage rather than a script: <run>/tune/<candidate>.tsv.
FOLDERS = {"tune": "train_candidate"}


def rule_of(relative: Path) -> str:
    parts = [part.removesuffix(".tsv") for part in relative.parts]
    named = next((part for part in parts if part in SCRIPTS), None)
    return named or next((FOLDERS[part] for part in parts if part in FOLDERS), parts[0])


def main(benchmarks: Path) -> None:
    frames = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        relative = path.relative_to(benchmarks)
        frame["rule"] = rule_of(relative)
        log = (benchmarks.parent / "logs" / relative).with_suffix(".log")
        peak = logged_value(log, "prunequant-peak-memory-mb:")
        if peak is not None:
            frame["max_rss"] = peak
        frames.append(frame)
    if not frames:
        raise SystemExit(f"{benchmarks}: no benchmark files")
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
    known = [rule for rule in ORDER if rule in table.index]
    table = table.reindex(known + [rule for rule in table.index if rule not in ORDER])
    print(table.round(2).to_string())
    print(f"\nsum of job times: {table.seconds_total.sum():.1f} s over {table.jobs.sum()} jobs")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
