"""Compare two results folders: ``python -m prunequant.compare A B``.

Prints, as plain text:

1. per variant present in either folder: mean test accuracy in A and in B, the difference B − A and,
   where both folders hold predictions of the same samples for at least one common run, the paired
   verdict of B against A (see :func:`prunequant.stats.paired_comparison`);
2. the other per-variant metrics (validation accuracy, loss, sizes, MACs, latencies) that changed;
3. the settings that differ: every config key of ``report/provenance.json`` (dotted), the seeds,
   the package versions, the device and the git commit.

A folder without ``report/runs.csv`` is not a results folder: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.errors import UserError
from prunequant.report.aggregate import RUNS_FILE, load_latency, load_runs, read_predictions
from prunequant.stats import paired_comparison

__all__ = ["compare_runs", "flatten", "main", "setting_differences"]

PROVENANCE_FILE = Path("report", "provenance.json")
_OTHER_METRICS = (
    "val_accuracy",
    "loss",
    "weight_bytes",
    "size_bytes",
    "macs",
    "nonzero_parameters",
    "latency_batch1_ms",
    "latency_batch64_ms",
)
_COMPARED_PROVENANCE = ("config", "seeds", "versions", "device", "git_commit")
_ABSENT = "<absent>"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the differences between two results folders; 0 on success, 2 on a bad folder."""
    parser = argparse.ArgumentParser(
        prog="python -m prunequant.compare",
        description="Metric and setting differences between two prunequant results folders (B against A).",
    )
    parser.add_argument("a", type=Path, help="first results folder (the reference), e.g. results")
    parser.add_argument("b", type=Path, help="second results folder, compared against A")
    parser.add_argument(
        "--n-boot", type=int, default=2000, help="bootstrap resamples for the paired interval"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--confidence", type=float, default=0.95, help="level of the paired interval")
    args = parser.parse_args(argv)
    try:
        for folder in (args.a, args.b):
            if not (folder / RUNS_FILE).is_file():
                raise UserError(
                    f"{folder} is not a results folder (no {RUNS_FILE}); pass the folder the workflow wrote"
                )
        accuracy, others = compare_runs(
            args.a, args.b, confidence=args.confidence, n_boot=args.n_boot, seed=args.seed
        )
        settings = setting_differences(_read_provenance(args.a), _read_provenance(args.b))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(_render(args.a, args.b, accuracy, others, settings))
    return 0


def compare_runs(
    a: Path, b: Path, *, confidence: float, n_boot: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-variant accuracy table and the long table of other metrics that changed, B against A.

    Accuracy columns: ``variant``, ``accuracy_a``, ``accuracy_b``, ``difference_pp`` (B − A),
    ``paired_diff_pp``, ``paired_low``, ``paired_high``, ``paired_p``, ``verdict`` (empty where not
    paired), ``paired_runs``. Other-metric columns: ``variant``, ``metric``, ``a``, ``b``.
    """
    runs_a, runs_b = load_runs(a), load_runs(b)
    means_a, means_b = _variant_means(runs_a, a), _variant_means(runs_b, b)
    variants = list(dict.fromkeys([*means_a.index, *means_b.index]))
    rows = []
    for variant in variants:
        row = {
            "variant": variant,
            "accuracy_a": means_a["accuracy"].get(variant, np.nan),
            "accuracy_b": means_b["accuracy"].get(variant, np.nan),
        }
        row["difference_pp"] = row["accuracy_b"] - row["accuracy_a"]
        row |= _paired(variant, runs_a, a, runs_b, b, confidence=confidence, n_boot=n_boot, seed=seed)
        rows.append(row)
    accuracy = pd.DataFrame(rows)
    changes = []
    for variant in variants:
        for metric in _OTHER_METRICS:
            value_a = _lookup(means_a, variant, metric)
            value_b = _lookup(means_b, variant, metric)
            if not _same(value_a, value_b):
                changes.append({"variant": variant, "metric": metric, "a": value_a, "b": value_b})
    return accuracy, pd.DataFrame(changes, columns=["variant", "metric", "a", "b"])


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts as one level of dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``)."""
    if isinstance(value, dict) and value:
        flat = {}
        for key, inner in value.items():
            flat |= flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: value}


def setting_differences(provenance_a: dict, provenance_b: dict) -> list[tuple[str, object, object]]:
    """(dotted key, value in A, value in B) for every compared provenance entry that differs."""
    flat_a = flatten({key: provenance_a[key] for key in _COMPARED_PROVENANCE if key in provenance_a})
    flat_b = flatten({key: provenance_b[key] for key in _COMPARED_PROVENANCE if key in provenance_b})
    keys = sorted(set(flat_a) | set(flat_b))
    return [
        (key, flat_a.get(key, _ABSENT), flat_b.get(key, _ABSENT))
        for key in keys
        if flat_a.get(key, _ABSENT) != flat_b.get(key, _ABSENT)
    ]


def _variant_means(runs: pd.DataFrame, folder: Path) -> pd.DataFrame:
    numeric = ["accuracy", *(m for m in _OTHER_METRICS if m in runs.columns)]
    means = runs.groupby("variant", sort=False)[numeric].mean()
    latency = load_latency(folder).set_index("variant")
    for column in ("latency_batch1_ms", "latency_batch64_ms"):
        if column in latency.columns:
            means[column] = latency[column].reindex(means.index)
    return means


def _paired(
    variant: str, runs_a: pd.DataFrame, a: Path, runs_b: pd.DataFrame, b: Path, **options: float
) -> dict:
    empty = {"paired_diff_pp": np.nan, "paired_low": np.nan, "paired_high": np.nan, "paired_p": np.nan}
    empty |= {"verdict": "", "paired_runs": 0}
    correct_a, correct_b, test_sets = {}, {}, {}
    rows_a = runs_a[runs_a["variant"] == variant].set_index("run")
    rows_b = runs_b[runs_b["variant"] == variant].set_index("run")
    for run in rows_a.index.intersection(rows_b.index):
        pair = [
            _test_predictions(folder, rows.at[run, "predictions"])
            for folder, rows in ((a, rows_a), (b, rows_b))
        ]
        if pair[0] is None or pair[1] is None or pair[0][0] != pair[1][0]:
            continue  # missing file or other samples: no pairing for this run
        correct_a[run], correct_b[run] = pair[0][1], pair[1][1]
        test_sets[run] = pair[0][0]
    if not correct_a:
        return empty
    result = paired_comparison(correct_b, correct_a, test_sets=test_sets, **options)
    return {
        "paired_diff_pp": result.difference_pp,
        "paired_low": result.low,
        "paired_high": result.high,
        "paired_p": result.p_value,
        "verdict": result.verdict,
        "paired_runs": result.n_runs,
    }


def _test_predictions(folder: Path, relative: object) -> tuple[tuple[str, ...], np.ndarray] | None:
    if not isinstance(relative, str) or not relative or not (folder / relative).is_file():
        return None
    frame = read_predictions(folder / relative)
    test = frame[frame["split"] == "test"]
    return tuple(test["sample_id"]), test["correct"].to_numpy(dtype=bool)


def _read_provenance(folder: Path) -> dict:
    path = folder / PROVENANCE_FILE
    if not path.is_file():
        return {}
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}); rerun the report rule"
        ) from err
    if not isinstance(provenance, dict):
        raise UserError(f"{path}: expected a JSON object; rerun the report rule")
    return provenance


def _lookup(means: pd.DataFrame, variant: str, metric: str) -> float:
    if variant not in means.index or metric not in means.columns:
        return np.nan
    return float(means.at[variant, metric])


def _same(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _render(
    a: Path,
    b: Path,
    accuracy: pd.DataFrame,
    others: pd.DataFrame,
    settings: list[tuple[str, object, object]],
) -> str:
    lines = [
        f"A = {a}",
        f"B = {b}",
        "",
        "Test accuracy (%, mean over runs); verdict: B against A, paired",
        "",
    ]
    rows = []
    for row in accuracy.itertuples(index=False):
        paired = row.paired_runs > 0
        rows.append(
            (
                row.variant,
                _number(row.accuracy_a),
                _number(row.accuracy_b),
                _number(row.difference_pp, signed=True),
                f"[{_number(row.paired_low, signed=True)}, {_number(row.paired_high, signed=True)}]"
                if paired
                else "",
                f"{row.paired_p:.3g}" if paired else "",
                f"{row.verdict} ({row.paired_runs} run(s))" if paired else "not paired",
            )
        )
    header = ("variant", "A", "B", "B-A (pp)", "paired 95% interval (pp)", "McNemar p", "verdict")
    lines += _text_table(header, rows, right_aligned={1, 2, 3, 4, 5})
    lines += ["", "Other metrics that changed (means over runs)", ""]
    changed = [(r.variant, r.metric, _number(r.a), _number(r.b)) for r in others.itertuples(index=False)]
    lines += (
        _text_table(("variant", "metric", "A", "B"), changed, right_aligned={2, 3}) if changed else ["none"]
    )
    lines += ["", "Settings that differ (provenance.json)", ""]
    differing = [(key, _setting(x), _setting(y)) for key, x, y in settings]
    lines += _text_table(("setting", "A", "B"), differing, right_aligned=set()) if differing else ["none"]
    return "\n".join(lines)


def _text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right_aligned: set[int]
) -> list[str]:
    widths = [max(len(str(cells[i])) for cells in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).rjust(width) if i in right_aligned else str(cell).ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return [line(header), line(["-" * width for width in widths]), *map(line, rows)]


def _setting(value: object) -> str:
    return value if value == _ABSENT else json.dumps(value, default=str)


def _number(value: float, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if signed:
        return f"{value:+.2f}"
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


if __name__ == "__main__":
    sys.exit(main())
