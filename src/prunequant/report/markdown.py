"""The Markdown report: provenance, the recommendation, every variant with intervals and
verdicts, the pruning and quantization studies, the claims, latency and method notes.

Every number here comes from the tables built by :mod:`prunequant.report.build`; nothing
is chosen on the test split (the recommendation and recipe choices use validation accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from prunequant.stats import SINGLE_RUN

__all__ = ["render_report", "table", "confidence_label"]

BASELINE = "baseline/fp32_torch"


# ----------------------------------------------------------------------------- formatting


def _number(decimals: int) -> Callable[[object], str]:
    def fmt(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        return f"{float(value):,.{decimals}f}"

    return fmt


def _integer(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{int(value):,}"


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(value)


def interval(row: Mapping, key: str, decimals: int = 2) -> str:
    """ "97.03 [96.10, 97.96]" from ``key``, ``key_low`` and ``key_high``."""
    value, low, high = row.get(key), row.get(f"{key}_low"), row.get(f"{key}_high")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    fmt = _number(decimals)
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return fmt(value)
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def difference(row: Mapping, prefix: str) -> str:
    """A paired comparison in one cell: estimate, raw interval, verdict after the family's adjustment.

    "−1.08 [−2.07, −0.18] **worse** (adj. p 0.012)"; "+1.71 [+0.72, +2.79] no detectable difference
    (adj. p 0.31; detectable ≥ 4.10 pp)" — where the raw interval excludes zero but the adjusted p
    does not, the verdict says so; one run: "+0.40 [+0.10, +0.73] one run: test samples only".
    """
    value = row.get(f"{prefix}_diff_pp")
    if _missing(value):
        return "–"
    low, high, verdict = row[f"{prefix}_low"], row[f"{prefix}_high"], row[f"{prefix}_verdict"]
    if row.get(f"{prefix}_identical") is True or row.get(f"{prefix}_identical") == "True":
        return f"{value:+.2f}, identical predictions on every test sample in every run"
    text = f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"
    if verdict == SINGLE_RUN:
        return f"{text} one run: test samples only, no method verdict"
    p_adjusted, detectable = row.get(f"{prefix}_p_adjusted"), row.get(f"{prefix}_min_detectable_pp")
    notes = [] if _missing(p_adjusted) else [f"adj. p {p_adjusted:.2g}"]
    mark = _VERDICT_MARK.get(verdict, verdict)
    if verdict == "no detectable difference" and (low > 0 or high < 0):
        mark += " after adjustment"  # the raw interval alone would have called it
        notes.insert(0, f"raw p {row[f'{prefix}_p']:.2g}")
    elif verdict == "no detectable difference" and not _missing(detectable):
        notes.append(f"detectable ≥ {detectable:.2f} pp")
    return f"{text} {mark}" + (f" ({'; '.join(notes)})" if notes else "")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


_VERDICT_MARK = {
    "better": "**better**",
    "worse": "**worse**",
    "no detectable difference": "no detectable difference",
}


def speedup(row: Mapping, prefix: str) -> str:
    """ "1.52× [1.40, 1.61] vs baseline/fp32_onnxruntime" — never a ratio without its reference."""
    value = row.get(f"{prefix}_speedup")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    verdict = row[f"{prefix}_speedup_verdict"]
    text = f"{value:.2f}× [{row[f'{prefix}_speedup_low']:.2f}, {row[f'{prefix}_speedup_high']:.2f}]"
    if verdict == "no measurable difference":
        text += " no measurable difference"
    return f"{text} vs `{row[f'{prefix}_reference']}`"


def table(
    rows: pd.DataFrame | Sequence[Mapping], columns: Sequence[tuple[str, Callable[[Mapping], str]]]
) -> str:
    """A Markdown table; each column is (header, function of the row)."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    lines = [
        "| " + " | ".join(header for header, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for record in records:
        lines.append("| " + " | ".join(cell(record) for _, cell in columns) + " |")
    return "\n".join(lines)


def _col(key: str, fmt: Callable[[object], str] = _text) -> Callable[[Mapping], str]:
    return lambda row: fmt(row.get(key))


# ----------------------------------------------------------------------------- sections


def _provenance(meta: Mapping, runs: Sequence[str]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    device = meta["device"]
    return "\n".join(
        [
            f"- **Config** hash `{meta['config_hash']}`; **runs** {len(runs)} ({', '.join(runs)}); "
            f"**seeds** {', '.join(map(str, meta['seeds']))}",
            f"- **Code** git `{meta['git_commit']}`; **date** {meta['date']}",
            f"- **Machine** {device['cpu']}, {device['cores']} cores; training on "
            f"{', '.join(device['training']) or 'cpu'}",
            f"- **Versions** {versions}",
        ]
    )


def _source_text(source) -> str:
    if not isinstance(source, dict):
        return str(source)
    kind = source.get("kind", "?")
    where = source.get("name") or source.get("path") or source.get("root") or source.get("train") or ""
    return f"{kind} {where}".strip()


def _dataset(datasets: Sequence[Mapping]) -> str:
    first = datasets[0]
    lines = [
        f"- Source: {_source_text(first.get('source'))}; {first['n_channels']} channel(s) × "
        f"{first['length']} "
        f"time steps; {len(first['classes'])} classes: {', '.join(map(str, first['classes']))}.",
    ]
    for meta in datasets:
        sizes_by_split = meta.get("split_sizes", {})
        sizes = ", ".join(f"{split} {sizes_by_split.get(split, '?')}" for split in ("train", "val", "test"))
        groups = meta.get("groups") or {}
        name, seed = meta.get("split_name", "fixed"), meta.get("seed", "?")
        text = f"- Split `{name}` (data seed {seed}): {sizes} samples"
        if any(groups.get(split) for split in ("train", "val", "test")):
            text += "; groups — " + "; ".join(
                f"{split}: {', '.join(groups.get(split, [])) or 'none'}" for split in ("train", "val", "test")
            )
        lines.append(text + ".")
    n_test = (first.get("split_sizes") or {}).get("test")
    if n_test:
        lines.append(
            f"- One test sample is {100 / n_test:.2f} percentage points of accuracy in one run: "
            "differences smaller than that are not resolved by a single run."
        )
    return "\n".join(lines)


def _recommendation(recommendation: Mapping | None, settings: Mapping, baseline: Mapping) -> str:
    limits = [f"a validation-accuracy drop of at most {settings['max_drop_pp']:g} pp against the baseline"]
    if settings.get("max_weight_bytes"):
        limits.append(f"at most {settings['max_weight_bytes']:,.0f} stored weight bytes")
    if settings.get("max_latency_ms"):
        limits.append(f"at most {settings['max_latency_ms']:g} ms at batch {settings['latency_batch']}")
    budget = "; ".join(limits)
    objective = {
        "weight_bytes": "the fewest stored weight bytes",
        "macs": "the fewest multiply-accumulates",
        "latency": f"the lowest latency at batch {settings['latency_batch']}",
    }[settings["objective"]]
    head = f"Budget: {budget}. Among the variants within it, the recommendation is the one with {objective}, "
    head += "chosen on **validation** accuracy; the test split only reports how it then did.\n\n"
    if recommendation is None:
        return head + "**No variant meets the budget.** Loosen the budget or add gentler methods.\n"
    row = recommendation["row"]
    return (
        head
        + "\n".join(
            [
                f"**Ship `{row['variant']}`** ({recommendation['reason']}).",
                "",
                f"- Validation accuracy {interval(row, 'val_accuracy')} % "
                f"(baseline {interval(baseline, 'val_accuracy')} %).",
                f"- Test accuracy {interval(row, 'accuracy')} % against the baseline's "
                f"{interval(baseline, 'accuracy')} %: "
                f"{_against_baseline(row)}.",
                f"- {_integer(row.get('weight_bytes'))} weight bytes "
                f"({row.get('weight_bytes', math.nan) / baseline['weight_bytes']:.2f}× the baseline's), "
                f"{_integer(row.get('macs'))} MACs per sample.",
            ]
        )
        + "\n"
    )


def _against_baseline(row: Mapping) -> str:
    if row["variant"] == BASELINE:
        return "it is the baseline"
    # Paired against the fp32 baseline as trained (build adds these), whatever the deployment.
    return difference(row, "vs_reference") + " (paired, against `baseline/fp32_torch`)"


def confidence_label(confidence: float) -> str:
    """``0.95`` → ``"95%"``, ``0.975`` → ``"97.5%"``: an interval's level as the report prints it."""
    return f"{100 * float(confidence):g}%"


def _variants_table(summary: pd.DataFrame) -> str:
    level = confidence_label(summary["confidence"].iloc[0])
    return table(
        summary,
        [
            ("variant", lambda r: f"`{r['variant']}`"),
            ("method", _col("method")),
            ("rate", _rate_cell),
            (f"val acc % [{level} CI]", lambda r: interval(r, "val_accuracy")),
            (f"test acc % [{level} CI]", lambda r: interval(r, "accuracy")),
            ("test Δ vs baseline, pp [CI], verdict", lambda r: difference(r, "vs_baseline")),
            ("params", _col("parameters", _integer)),
            ("non-zero", _col("nonzero_parameters", _integer)),
            ("MACs", _col("macs", _integer)),
            ("weight bytes", _col("weight_bytes", _integer)),
            ("peak activations B", _col("peak_activation_bytes", _integer)),
            ("warning", lambda r: "val and test disagree" if r.get("divergent") else ""),
        ],
    )


def _rate_cell(row: Mapping) -> str:
    if row["family"] == "baseline":
        return "–"
    if row["family"] == "sensitivity":  # rates per block, listed in the pruning study
        return "per block"
    return f"{row['rate']:g}"


def _statistics(statistics: Mapping, confidence: float) -> str:
    """How the verdicts were drawn, and what this many runs can resolve."""
    resolution = statistics["resolution"]
    level = confidence_label(confidence)
    lines = [
        "Every difference is paired: the same runs and the same test samples. Its interval counts "
        "**training runs** as well as test samples: a Student-t interval over the per-run differences "
        "(on a shared test set, widened for the samples every run shares: runs × samples as crossed "
        "random effects; with leave-one-group-out folds, over the fold means). A verdict about a "
        "*method* needs at least 2 runs; with one run an interval covers test sampling only.",
        f"The report's comparisons are one family of {resolution.get('n_family', 0)}: their p-values are "
        f"adjusted by **{statistics['adjustment_name']}** (`report.multiple_comparisons`), and a "
        f"difference is called *better* or *worse* only when its adjusted p is below "
        f"{1 - confidence:.2g}. Intervals are the raw {level} intervals"
        + (
            f"; {resolution['raw_only']} raw interval(s) exclude zero but do not survive the adjustment."
            if resolution.get("raw_only")
            else "."
        ),
    ]
    if resolution.get("n_family"):
        lines.append(
            f"**Resolution.** With {resolution['n_units']} independent runs, the median comparison "
            f"could detect a difference of {resolution['median_min_detectable_pp']:.2f} pp "
            f"({100 * statistics['power']:g}% power); about **{resolution['runs_for_resolution']} runs** "
            f"would resolve {statistics['resolution_pp']:g} pp on this data (median run-to-run spread of "
            f"the paired differences {resolution['median_spread_pp']:.2f} pp)."
            + (
                f" {resolution['undecided_coarse']} comparison(s) without a verdict could not have "
                f"detected {statistics['resolution_pp']:g} pp: run more seeds to decide them."
                if resolution["undecided_coarse"]
                else ""
            )
        )
    else:
        lines.append(
            "**One run only:** no verdict about any method can be drawn; set `seeds` to at least 2 "
            "(5 or more to resolve differences of about a point)."
        )
    return "\n\n".join(lines)


def _latency_scope(first_run: str, varying: Sequence[str]) -> str:
    text = (
        f"These intervals are over timing rounds of fixed files, the first run's models ({first_run}): "
        "they say how precisely those files' speed was measured, which is what a timing needs, and are "
        "not intervals over training runs. A claim that a *method* is faster rests on the architecture "
        "it produces, and speed depends on the architecture, not on the weights: layer-wise pruning at "
        "a rate gives the same channel counts in every run, so its timing holds for the method."
    )
    if varying:
        text += (
            " The architecture of "
            + ", ".join(f"`{variant}`" for variant in varying)
            + " differs between runs (its parameter count varies): its timing is that of the first "
            "run's architecture only."
        )
    return text


def _latency_table(latency: pd.DataFrame) -> str:
    if latency.empty:
        return "No latency was measured."
    rows = latency[latency["against"].fillna("baseline") == "baseline"] if "against" in latency else latency
    wide = []
    for (variant, runtime), group in rows.groupby(["variant", "runtime"], sort=False):
        record = {"variant": variant, "runtime": runtime}
        for _, item in group.iterrows():
            prefix = f"b{int(item['batch_size'])}"
            record[f"{prefix}"] = interval(
                {"m": item["median_ms"], "m_low": item["low_ms"], "m_high": item["high_ms"]}, "m", 3
            )
            if isinstance(item.get("reference"), str):
                record[f"{prefix}_speedup"] = speedup(
                    {
                        "x_speedup": item["speedup"],
                        "x_speedup_low": item["speedup_low"],
                        "x_speedup_high": item["speedup_high"],
                        "x_speedup_verdict": item["speedup_verdict"],
                        "x_reference": item["reference"],
                    },
                    "x",
                )
        wide.append(record)
    return table(
        wide,
        [
            ("variant", lambda r: f"`{r['variant']}`"),
            ("runtime", _col("runtime")),
            ("batch 1, ms [CI]", _col("b1")),
            ("speedup at batch 1 [CI]", _col("b1_speedup")),
            ("batch 64, ms [CI]", _col("b64")),
            ("speedup at batch 64 [CI]", _col("b64_speedup")),
        ],
    )


def render_report(
    *,
    provenance: Mapping,
    runs: Sequence[str],
    datasets: Sequence[Mapping],
    settings: Mapping,
    summary: pd.DataFrame,
    latency: pd.DataFrame,
    recommendation: Mapping | None,
    sections: Mapping[str, str],
    figures: Mapping[str, tuple[str, str, str]],
    interval_method: str,
    statistics: Mapping,
) -> str:
    """The whole report as Markdown.

    ``sections`` holds the study sections already written (tuning, pruning, quantization,
    claims, per-class); ``figures`` maps a name to (relative path, title, caption).
    """
    baseline = summary[summary["variant"] == BASELINE].iloc[0].to_dict()
    divergent = summary[summary.get("divergent", False) == True]  # noqa: E712 - a boolean column
    parts = [
        "# prunequant report",
        _provenance(provenance, runs),
        "## Data",
        _dataset(datasets),
        "## Recommendation",
        _recommendation(recommendation, settings, baseline),
        "## How the verdicts are drawn",
        _statistics(statistics, baseline["confidence"]),
    ]
    if len(divergent):
        parts += [
            "> **Warning: validation and test part ways** for "
            + ", ".join(f"`{v}`" for v in divergent["variant"])
            + ": against the baseline, their validation and test differences point in opposite directions "
            "by more than one test sample. A choice made on validation may not hold on test: look at "
            "the per-run rows (`runs.csv`) and the groups of each split."
        ]
    parts += [
        "## Every variant",
        f"Accuracies are means over runs with {confidence_label(baseline['confidence'])} intervals "
        f"({interval_method}). Differences are against the baseline in the same deployment "
        "(see *How the verdicts are drawn*).",
        _variants_table(summary),
    ]
    for key in ("tuning", "pruning", "quantization", "distillation", "device", "claims", "per_class"):
        if sections.get(key):
            parts.append(sections[key])
    parts += [
        "## Latency",
        "All variants of one runtime were timed in one job, in interleaved rounds (each variant once per "
        "round, order shuffled per round), with threads pinned; medians with bootstrap 95% intervals. "
        "Speedups are medians of per-round ratios against the named reference, in the same runtime; "
        "a speedup "
        "whose interval includes 1.0 is marked *no measurable difference*.",
        _latency_scope(runs[0], statistics.get("varying_architectures", [])),
        _latency_table(latency),
        "## Figures",
    ]
    for _, (path, title, caption) in figures.items():
        parts += [f"### {title}", f"![{title}]({path})", caption]
    return "\n\n".join(parts) + "\n"
