"""Statistics the report can stand behind: accuracy intervals, paired verdicts, Pareto fronts and a
recommendation chosen on validation data only.

Conventions shared by every function here:

- A run's predictions enter as a boolean array ``correct`` (one entry per sample, True where the
  prediction matched the label), keyed by the run's name (e.g. ``"seed0"``). Two arrays of one run
  hold the same samples in the same order; that is what makes a comparison paired.
- Accuracies and their differences are in percent / percentage points.
- Every random draw comes from ``numpy.random.default_rng(seed)``: same inputs and seed, same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from prunequant.errors import UserError

__all__ = [
    "COST_COLUMNS",
    "Interval",
    "PairedResult",
    "Recommendation",
    "SELECTION_COLUMNS",
    "VERDICTS",
    "accuracy_interval",
    "describe_budget",
    "paired_comparison",
    "pareto_mask",
    "recommend",
]

VERDICTS = ("better", "worse", "no detectable difference")

# Columns a variant may be ranked by (smaller is better) and the only columns `recommend` keeps:
# validation accuracy and costs. Everything else (test accuracy, loss, test intervals, verdicts)
# is dropped before choosing, so the test split cannot influence the choice.
COST_COLUMNS = (
    "weight_bytes",
    "size_bytes",
    "macs",
    "parameters",
    "nonzero_parameters",
    "latency_batch1_ms",
    "latency_batch64_ms",
)
SELECTION_COLUMNS = ("variant", "val_accuracy", *COST_COLUMNS)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided interval, in percent, and how the interval was made."""

    estimate: float
    low: float
    high: float
    method: str


@dataclass(frozen=True)
class PairedResult:
    """A variant's accuracy minus its reference's on the same samples and runs.

    ``discordant`` is (samples only the variant got right, samples only the reference got right),
    summed over runs: the pairs McNemar's test counts.
    """

    difference_pp: float
    low: float
    high: float
    p_value: float
    verdict: str
    method: str
    n_runs: int
    n_samples: int
    discordant: tuple[int, int]


@dataclass(frozen=True)
class Recommendation:
    """The chosen variant, a sentence saying why, and its full input row (for reporting only)."""

    variant: str
    reason: str
    row: dict


def accuracy_interval(
    correct_by_run: Mapping[str, np.ndarray],
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    split: str = "test",
) -> Interval:
    """Mean accuracy over runs with a ``confidence`` interval, in percent.

    Several runs: Student-t interval of the per-run accuracies, so it covers seed-to-seed variation
    (clipped to [0, 100], the range an accuracy can take). One run: percentile bootstrap over its
    samples, which only covers the finite ``split`` (named in the method text).
    """
    _check_confidence(confidence)
    runs = _as_bool_runs(correct_by_run, "correct_by_run")
    if len(runs) >= 2:
        accuracies = np.array([100.0 * correct.mean() for correct in runs.values()])
        mean = float(accuracies.mean())
        sem = float(accuracies.std(ddof=1)) / math.sqrt(len(accuracies))
        half_width = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=len(accuracies) - 1)) * sem
        low, high = max(0.0, mean - half_width), min(100.0, mean + half_width)
        return Interval(mean, low, high, f"t over {len(accuracies)} runs")
    (correct,) = runs.values()
    result = scipy_stats.bootstrap(
        (100.0 * correct.astype(float),),
        np.mean,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Interval(
        float(100.0 * correct.mean()),
        float(interval.low),
        float(interval.high),
        f"bootstrap over {correct.size} {split} samples",
    )


def paired_comparison(
    variant: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairedResult:
    """Variant accuracy minus reference accuracy on the runs both have, with interval, p and verdict.

    The difference is the mean over runs of the per-run accuracy differences. Its interval is a
    percentile bootstrap over samples, stratified by run: each run's samples are resampled on their
    own, with the same indices for variant and reference, so the pairing is kept. The p-value is
    the exact McNemar test (a binomial test on the discordant pairs, pooled over runs).

    The verdict follows the interval, not p: "better" when the whole interval is above 0, "worse"
    when it is below 0, else "no detectable difference". The two usually agree; p is reported so a
    reader can see how close a call was.
    """
    _check_confidence(confidence)
    variant_runs = _as_bool_runs(variant, "variant")
    reference_runs = _as_bool_runs(reference, "reference")
    common = [run for run in variant_runs if run in reference_runs]
    if not common:
        raise ValueError(
            f"no run in common: variant has {sorted(variant_runs)}, reference has {sorted(reference_runs)}"
        )
    differences, only_variant, only_reference = [], 0, 0
    for run in common:
        ours, theirs = variant_runs[run], reference_runs[run]
        if ours.shape != theirs.shape:
            raise ValueError(f"run {run!r}: {ours.size} variant samples but {theirs.size} reference samples")
        differences.append(100.0 * (ours.astype(float) - theirs.astype(float)))
        only_variant += int(np.sum(ours & ~theirs))
        only_reference += int(np.sum(~ours & theirs))
    estimate = float(np.mean([run_differences.mean() for run_differences in differences]))
    low, high = _stratified_bootstrap(differences, confidence=confidence, n_boot=n_boot, seed=seed)
    n_discordant = only_variant + only_reference
    p_value = 1.0 if n_discordant == 0 else float(scipy_stats.binomtest(only_variant, n_discordant).pvalue)
    return PairedResult(
        difference_pp=estimate,
        low=low,
        high=high,
        p_value=p_value,
        verdict=_verdict(low, high),
        method=f"paired bootstrap over samples within {len(common)} run(s); exact McNemar p",
        n_runs=len(common),
        n_samples=sum(run_differences.size for run_differences in differences),
        discordant=(only_variant, only_reference),
    )


def pareto_mask(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True for every non-dominated point: lower cost and higher accuracy are better.

    A point is dominated when another has cost ≤ and accuracy ≥ with at least one strict. Identical
    points do not dominate each other, so both stay on the front. A point with a NaN cost or
    accuracy (e.g. a latency that was not measured) is never on the front and dominates nothing.
    """
    cost = np.asarray(cost, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    if cost.shape != accuracy.shape or cost.ndim != 1:
        raise ValueError(
            f"cost and accuracy must be 1-D of one length, got {cost.shape} and {accuracy.shape}"
        )
    finite = np.isfinite(cost) & np.isfinite(accuracy)
    # dominates[i, j]: point i dominates point j.
    no_worse = (cost[:, None] <= cost[None, :]) & (accuracy[:, None] >= accuracy[None, :])
    strictly_better = (cost[:, None] < cost[None, :]) | (accuracy[:, None] > accuracy[None, :])
    dominates = no_worse & strictly_better & finite[:, None]
    return finite & ~dominates.any(axis=0)


def recommend(
    table: pd.DataFrame,
    *,
    reference_variant: str,
    max_drop_pp: float,
    max_weight_bytes: float | None = None,
    max_latency_ms: float | None = None,
    latency_batch: int = 1,
    objective: str = "weight_bytes",
) -> Recommendation | None:
    """The variant with the smallest ``objective`` among those that meet the budgets on validation.

    ``table`` has one row per variant with at least ``variant``, ``val_accuracy`` (mean over runs,
    percent), ``weight_bytes``, ``macs``, ``latency_batch1_ms`` and ``latency_batch64_ms`` (NaN where
    not measured). Only :data:`SELECTION_COLUMNS` are kept before choosing; every test-derived column
    is dropped, so the test split is never used to choose.

    Eligible: validation accuracy ≥ the reference's minus ``max_drop_pp``, weight bytes ≤
    ``max_weight_bytes`` and ``latency_batch<latency_batch>_ms`` ≤ ``max_latency_ms`` when given. A
    variant whose limited or ranked cost is NaN is not eligible (it cannot be shown to meet it).
    The reference itself is a candidate: when nothing compressed meets the budget but the reference
    does, the reference is returned and the reason says so. Ties on the objective go to the higher
    validation accuracy, then to the name. Returns None when no variant qualifies.
    """
    latency_column = f"latency_batch{latency_batch}_ms"
    if objective not in COST_COLUMNS:
        raise UserError(
            f"recommendation objective {objective!r} is unknown: use one of {', '.join(COST_COLUMNS)}"
        )
    if not math.isfinite(max_drop_pp) or max_drop_pp < 0:
        raise UserError(f"largest accepted accuracy drop is {max_drop_pp!r}: give a number of points ≥ 0")
    needed = {"variant", "val_accuracy", "weight_bytes", objective}
    if max_latency_ms is not None:
        needed.add(latency_column)
    missing = sorted(needed - set(table.columns))
    if missing:
        raise ValueError(f"recommend: table lacks column(s) {', '.join(missing)}")
    candidates = table[[column for column in SELECTION_COLUMNS if column in table.columns]]
    if candidates["variant"].duplicated().any():
        raise ValueError("recommend: the table must have one row per variant")
    by_name = candidates.set_index("variant")
    if reference_variant not in by_name.index:
        raise UserError(
            f"reference variant {reference_variant!r} is not among the evaluated variants: name one of "
            f"{', '.join(by_name.index[:5])}{', …' if len(by_name) > 5 else ''}"
        )
    floor = float(by_name.at[reference_variant, "val_accuracy"]) - max_drop_pp
    eligible = candidates["val_accuracy"] >= floor
    if max_weight_bytes is not None:
        eligible &= candidates["weight_bytes"] <= max_weight_bytes
    if max_latency_ms is not None:
        eligible &= candidates[latency_column] <= max_latency_ms
    eligible &= candidates[objective].notna()  # NaN compares False above, but not for the objective
    chosen = candidates[eligible].sort_values(
        [objective, "val_accuracy", "variant"], ascending=[True, False, True], kind="stable"
    )
    if chosen.empty:
        return None
    best = chosen.iloc[0]
    variant = str(best["variant"])
    budget = _describe_budget(
        floor, reference_variant, max_drop_pp, max_weight_bytes, max_latency_ms, latency_batch
    )
    reason = (
        f"smallest {objective} ({best[objective]:,.6g}) among {len(chosen)} of {len(candidates)} variants "
        f"with {budget}; chosen on validation accuracy {best['val_accuracy']:.2f}%, "
        "the test split was not used"
    )
    if variant == reference_variant:
        reason += "; this is the reference itself: no compressed variant meets the budget at a lower cost"
    full_row = table[table["variant"] == variant].iloc[0].to_dict()
    return Recommendation(variant=variant, reason=reason, row=full_row)


def describe_budget(
    table: pd.DataFrame,
    *,
    reference_variant: str,
    max_drop_pp: float,
    max_weight_bytes: float | None = None,
    max_latency_ms: float | None = None,
    latency_batch: int = 1,
) -> str:
    """The budget of :func:`recommend` in words, with the accuracy floor it implies on ``table``.

    For the report's sentence when :func:`recommend` returns None, e.g. "No variant meets the budget:
    validation accuracy ≥ 95.25% (baseline/fp32_torch minus 1 pp) and weight bytes ≤ 1,000."
    """
    reference = table.loc[table["variant"] == reference_variant, "val_accuracy"]
    if reference.empty:
        raise UserError(f"reference variant {reference_variant!r} is not among the evaluated variants")
    floor = float(reference.iloc[0]) - max_drop_pp
    return _describe_budget(
        floor, reference_variant, max_drop_pp, max_weight_bytes, max_latency_ms, latency_batch
    )


def _describe_budget(
    floor: float,
    reference_variant: str,
    max_drop_pp: float,
    max_weight_bytes: float | None,
    max_latency_ms: float | None,
    latency_batch: int,
) -> str:
    conditions = [f"validation accuracy ≥ {floor:.2f}% ({reference_variant} minus {max_drop_pp:g} pp)"]
    if max_weight_bytes is not None:
        conditions.append(f"weight bytes ≤ {max_weight_bytes:,.0f}")
    if max_latency_ms is not None:
        conditions.append(f"batch-{latency_batch} latency ≤ {max_latency_ms:g} ms")
    return " and ".join(conditions)


def _as_bool_runs(correct_by_run: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    if not correct_by_run:
        raise ValueError(f"{name}: no runs given")
    runs = {}
    for run, correct in correct_by_run.items():
        array = np.asarray(correct)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{name}[{run!r}]: expected a non-empty 1-D array, got shape {array.shape}")
        if array.dtype != bool and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name}[{run!r}]: expected True/False (or 1/0) per sample")
        runs[str(run)] = array.astype(bool)
    return runs


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _stratified_bootstrap(
    differences: list[np.ndarray], *, confidence: float, n_boot: int, seed: int
) -> tuple[float, float]:
    def mean_over_runs(*runs: np.ndarray, axis: int) -> np.ndarray:
        return np.mean([run.mean(axis=axis) for run in runs], axis=0)

    # scipy resamples each sample on its own: passing one sample per run stratifies by run, and
    # resampling the per-sample differences resamples the (variant, reference) pairs together.
    result = scipy_stats.bootstrap(
        tuple(differences),
        mean_over_runs,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no detectable difference"
