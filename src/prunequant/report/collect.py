"""Gathering the study's files into tables: one row per run and variant, latency, provenance.

Every stage wrote a metrics JSON and per-sample predictions; this module only reads them,
so the report's statistics never need a rerun of training.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from prunequant.config import config_hash
from prunequant.variants import parse_model

__all__ = ["build_runs", "build_latency", "provenance", "read_histories", "PACKAGES"]

PathLike = str | os.PathLike

# The packages whose versions decide the numbers: recorded in every report.
PACKAGES = ("torch", "torch-pruning", "onnx", "onnxruntime", "numpy", "scipy", "pandas", "snakemake")


def build_runs(metric_paths: Iterable[PathLike], results_dir: PathLike) -> pd.DataFrame:
    """One row per (run, variant) from the evaluation JSONs, with the path of its predictions.

    ``predictions`` is relative to ``results_dir``, so a moved results folder still reads.
    """
    results_dir = Path(results_dir)
    rows = []
    for path in map(Path, metric_paths):
        record = json.loads(path.read_text())
        record["method"] = parse_model(record["model"]).method
        record["predictions"] = (path.parent / "predictions.csv").relative_to(results_dir).as_posix()
        rows.append(record)
    if not rows:
        raise ValueError("no evaluation metrics to report")
    runs = pd.DataFrame(rows)
    order = {"baseline": 0, "structured": 1, "sensitivity": 2, "unstructured": 3, "scratch": 4}
    runs["_family_order"] = runs["family"].map(order).fillna(9)
    runs = runs.sort_values(["_family_order", "model", "deployment", "run"]).drop(columns="_family_order")
    return runs.reset_index(drop=True)


def build_latency(timings: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per (variant, batch size, reference) from the timing jobs' JSON records.

    ``timings`` maps a runtime to its record: medians with intervals per variant and batch
    size, and speedups against each of the named references measured in the same rounds.
    """
    rows = []
    for runtime, record in timings.items():
        for variant, per_batch in record["variants"].items():
            for batch_key, timing in per_batch.items():
                base = {
                    "variant": variant,
                    "runtime": runtime,
                    "batch_size": int(batch_key.removeprefix("batch")),
                    "median_ms": timing["median_ms"],
                    "low_ms": timing["low_ms"],
                    "high_ms": timing["high_ms"],
                    "threads": record["threads"],
                    "rounds": record["rounds"],
                }
                speedups = timing.get("speedups", {})
                if "baseline" not in speedups:  # the baseline itself: a row without a ratio
                    rows.append(base | {"against": "baseline"})
                for against, speedup in speedups.items():
                    rows.append(
                        base
                        | {
                            "against": against,
                            "reference": speedup["reference"],
                            "speedup": speedup["speedup"],
                            "speedup_low": speedup["speedup_low"],
                            "speedup_high": speedup["speedup_high"],
                            "speedup_verdict": speedup["verdict"],
                        }
                    )
    return pd.DataFrame(rows)


def read_histories(histories: Mapping[str, PathLike]) -> pd.DataFrame:
    """Every training history in one table, keyed by run and model ("run/model[/int8-recipe]")."""
    frames = []
    for key, path in histories.items():
        run, _, model = key.partition("/")
        frame = pd.read_csv(path)
        frames.append(frame.assign(run=run, model=model))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _git_commit(directory: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    dirty = subprocess.run(
        ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return result.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(config: Mapping, *, workflow_dir: PathLike, training_devices: Iterable[str]) -> dict:
    """What produced these numbers: settings, seeds, versions, hardware, code and date."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "config": dict(config),
        "config_hash": config_hash(dict(config)),
        "seeds": list(config["seeds"]),
        "versions": versions,
        "device": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "training": sorted(set(training_devices)),
        },
        "git_commit": _git_commit(Path(workflow_dir)),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
