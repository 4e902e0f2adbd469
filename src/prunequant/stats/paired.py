"""Paired comparisons of two variants that answer for the *method*, not for one trained model.

Two sources of variation decide whether one method beats another: which model a training run
happens to produce (seed, fold, data split) and which test samples happen to score it. The unit of
every interval here is therefore the run: a variant's accuracy minus its reference's is taken per
run, on the same test samples, and the interval is a Student-t interval over those per-run
differences, with one of two designs:

- **one shared test set** (a fixed split; several seeds score the same samples): runs and samples
  are crossed random effects. The variance of the mean difference is estimated from the two-way
  ANOVA mean squares, ``(MS_runs + MS_samples − MS_residual) / (R·n)``, so it counts run-to-run
  variation *and* the test samples that every run shares; never less than the plain t over runs.
  Degrees of freedom R − 1.
- **several test sets** (leave-one-group-out folds, each with its own held-out samples): runs that
  share a test set (the seeds of one fold) are averaged first, and the t-interval is over those
  fold means, with U − 1 degrees of freedom. Each fold's mean already carries its own samples'
  noise and its seeds' spread, so nothing is counted twice.

With one run there is nothing to say about the method: the interval is a bootstrap over that run's
test samples (how this one model would score on other samples), the p-value the exact McNemar
test, and the verdict :data:`SINGLE_RUN`.

The p-value of a method comparison is the two-sided t-test of the same design; the verdict follows
it at ``1 − confidence`` (the same as the interval excluding zero). A report draws many verdicts:
:func:`adjust_p_values` controls the family (Holm–Bonferroni or Benjamini–Hochberg, from
statsmodels), and :func:`verdict` turns an adjusted p into a word. :func:`min_detectable_difference`
and :func:`runs_to_resolve` say what a "no detectable difference" could have detected (statsmodels'
power of the t-test, 80% by default).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from prunequant.stats.intervals import bootstrap_mean_interval, check_confidence, check_runs

__all__ = [
    "ADJUSTMENTS",
    "PairedResult",
    "SINGLE_RUN",
    "VERDICTS",
    "adjust_p_values",
    "min_detectable_difference",
    "paired_comparison",
    "runs_to_resolve",
    "verdict",
]

VERDICTS = ("better", "worse", "no detectable difference")
SINGLE_RUN = "no method verdict (one run)"

# report.multiple_comparisons → statsmodels' name of the procedure (None: no adjustment).
ADJUSTMENTS = {"holm": "holm", "benjamini_hochberg": "fdr_bh", "none": None}
ADJUSTMENT_NAMES = {
    "holm": "Holm–Bonferroni",
    "benjamini_hochberg": "Benjamini–Hochberg",
    "none": "no adjustment",
}


@dataclass(frozen=True)
class PairedResult:
    """A variant's accuracy minus its reference's on the same runs and test samples, in points.

    ``run_differences`` holds the per-run differences (pp) in run order; ``n_units`` counts the
    independent units of the t-interval (runs on a shared test set, or test sets), 1 when the
    interval is over samples of one run. ``standard_error`` and ``df`` describe the estimate's
    t-distribution (NaN for one run). ``discordant`` is (samples only the variant got right,
    samples only the reference got right), summed over runs.
    """

    difference_pp: float
    low: float
    high: float
    p_value: float
    verdict: str
    method: str
    n_runs: int
    n_units: int
    n_samples: int
    run_differences: tuple[float, ...]
    standard_error: float
    df: float
    discordant: tuple[int, int]

    @property
    def is_method_comparison(self) -> bool:
        """True when the interval counts training runs, so a verdict about the method may be drawn."""
        return self.n_units >= 2


def paired_comparison(
    variant: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    *,
    confidence: float,
    n_boot: int,
    seed: int = 0,
    test_sets: Mapping[str, Hashable] | None = None,
) -> PairedResult:
    """Variant accuracy minus reference accuracy over the runs both have (see the module text).

    ``test_sets`` names each run's test set: runs with equal values scored the same samples in the
    same order. Without it every run is taken to share one test set (a fixed split).
    """
    check_confidence(confidence)
    variant_runs = check_runs(variant, "variant")
    reference_runs = check_runs(reference, "reference")
    common = [run for run in variant_runs if run in reference_runs]
    if not common:
        raise ValueError(
            f"no run in common: variant has {sorted(variant_runs)}, reference has {sorted(reference_runs)}"
        )
    differences, only_variant, only_reference = {}, 0, 0
    for run in common:
        ours, theirs = variant_runs[run], reference_runs[run]
        if ours.shape != theirs.shape:
            raise ValueError(f"run {run!r}: {ours.size} variant samples but {theirs.size} reference samples")
        differences[run] = 100.0 * (ours.astype(float) - theirs.astype(float))
        only_variant += int(np.sum(ours & ~theirs))
        only_reference += int(np.sum(~ours & theirs))
    per_run = tuple(float(values.mean()) for values in differences.values())
    shared = dict.fromkeys(common, "") if test_sets is None else {run: test_sets[run] for run in common}
    units = _group_by_test_set(differences, shared)
    common_fields = {
        "n_runs": len(common),
        "n_samples": sum(values.size for values in differences.values()),
        "run_differences": per_run,
        "discordant": (only_variant, only_reference),
    }
    if len(common) == 1:
        return _single_run(differences[common[0]], confidence, n_boot, seed, common_fields)
    if len(units) >= 2:
        means = np.array([np.mean([values.mean() for values in group]) for group in units])
        estimate = float(means.mean())
        standard_error = float(means.std(ddof=1)) / math.sqrt(len(means))
        n_units = len(means)
        method = f"t over {n_units} test sets (folds), the runs of each averaged first; {n_units - 1} df"
    else:
        (group,) = units
        matrix = np.stack(group)
        estimate = float(matrix.mean())
        standard_error = math.sqrt(_crossed_variance_of_mean(matrix))
        n_units = len(group)
        method = (
            f"t over {n_units} runs, widened for the test samples they share "
            f"(runs × samples crossed); {n_units - 1} df"
        )
    df = float(n_units - 1)
    quantile = float(scipy_stats.t.ppf(0.5 + confidence / 2, df))
    p_value = _t_test_p(estimate, standard_error, df)
    return PairedResult(
        difference_pp=estimate,
        low=estimate - quantile * standard_error,
        high=estimate + quantile * standard_error,
        p_value=p_value,
        verdict=verdict(estimate, p_value, alpha=1 - confidence),
        method=method,
        n_units=n_units,
        standard_error=standard_error,
        df=df,
        **common_fields,
    )


def verdict(difference_pp: float, p_value: float, *, alpha: float) -> str:
    """ "better" / "worse" when ``p_value`` < ``alpha`` (the sign says which), else no difference."""
    if not math.isfinite(p_value) or p_value >= alpha:
        return "no detectable difference"
    return "better" if difference_pp > 0 else "worse"


def adjust_p_values(p_values: Sequence[float], method: str) -> np.ndarray:
    """The family's p-values adjusted by ``method`` (a key of :data:`ADJUSTMENTS`); NaN stays NaN.

    The adjusted p of a comparison is the smallest family-wise (Holm) or false-discovery (BH) level
    at which it would still be called; comparing it with alpha gives the adjusted verdict.
    """
    if method not in ADJUSTMENTS:
        raise ValueError(
            f"unknown multiple-comparison adjustment {method!r}: use one of {sorted(ADJUSTMENTS)}"
        )
    p_values = np.asarray(p_values, dtype=float)
    adjusted = p_values.copy()
    finite = np.isfinite(p_values)
    if ADJUSTMENTS[method] is not None and finite.any():
        adjusted[finite] = multipletests(p_values[finite], method=ADJUSTMENTS[method])[1]
    return adjusted


def min_detectable_difference(result: PairedResult, *, confidence: float, power: float) -> float:
    """The smallest true difference (pp) the comparison's t-test detects with probability ``power``.

    From the observed spread of the per-unit differences (``standard_error · √n_units``) and
    statsmodels' power of the one-sample t-test at two-sided level ``1 − confidence``; NaN when the
    interval is over one run's samples.
    """
    if not result.is_method_comparison:
        return math.nan
    effect = TTestPower().solve_power(
        effect_size=None, nobs=result.n_units, alpha=1 - confidence, power=power, alternative="two-sided"
    )
    return float(effect) * result.standard_error * math.sqrt(result.n_units)


def runs_to_resolve(
    spread_pp: float, resolution_pp: float, *, confidence: float, power: float, most: int = 10_000
) -> int:
    """Independent runs needed to detect ``resolution_pp`` with ``power``, given a per-run spread.

    ``spread_pp`` is the standard deviation of the per-run paired differences. Returns ``most``
    when even that many would not do.
    """
    if not spread_pp > 0:
        return 2
    analysis = TTestPower()

    def achieved(runs: int) -> float:
        return analysis.power(
            effect_size=resolution_pp / spread_pp, nobs=runs, alpha=1 - confidence, alternative="two-sided"
        )

    if achieved(most) < power:
        return most
    low, high = 2, most  # power grows with runs: bisect for the first that reaches it
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if achieved(middle) < power else (low, middle)
    return low


def _group_by_test_set(
    differences: Mapping[str, np.ndarray], test_sets: Mapping[str, Hashable]
) -> list[list[np.ndarray]]:
    groups: dict[Hashable, list[np.ndarray]] = {}
    for run, values in differences.items():
        groups.setdefault(test_sets[run], []).append(values)
    for group in groups.values():
        if len({values.size for values in group}) > 1:
            raise ValueError("runs named as one test set hold different numbers of samples")
    return list(groups.values())


def _crossed_variance_of_mean(matrix: np.ndarray) -> float:
    """Variance of the grand mean of a runs × samples table with both as random effects.

    Expected mean squares of the two-way layout without replication: E[MS_runs] = σ²_e + n·σ²_run,
    E[MS_samples] = σ²_e + R·σ²_sample, E[MS_resid] = σ²_e, and Var(mean) = σ²_run/R +
    σ²_sample/n + σ²_e/(R·n) = (MS_runs + MS_samples − MS_resid)/(R·n). Floored at MS_runs/(R·n),
    the plain t over runs, so sharing samples never narrows the interval.
    """
    n_runs, n_samples = matrix.shape
    grand = matrix.mean()
    run_means, sample_means = matrix.mean(axis=1), matrix.mean(axis=0)
    ms_runs = n_samples * float(np.sum((run_means - grand) ** 2)) / (n_runs - 1)
    if n_samples == 1:
        return ms_runs / (n_runs * n_samples)
    ms_samples = n_runs * float(np.sum((sample_means - grand) ** 2)) / (n_samples - 1)
    residual = matrix - run_means[:, None] - sample_means[None, :] + grand
    ms_residual = float(np.sum(residual**2)) / ((n_runs - 1) * (n_samples - 1))
    return max(ms_runs + ms_samples - ms_residual, ms_runs) / (n_runs * n_samples)


def _t_test_p(estimate: float, standard_error: float, df: float) -> float:
    if standard_error == 0:  # every unit differed by exactly the same amount
        return 1.0 if estimate == 0 else 0.0
    return float(2 * scipy_stats.t.sf(abs(estimate) / standard_error, df))


def _single_run(
    differences: np.ndarray, confidence: float, n_boot: int, seed: int, fields: Mapping
) -> PairedResult:
    only_variant, only_reference = fields["discordant"]
    n_discordant = only_variant + only_reference
    p_value = 1.0 if n_discordant == 0 else float(scipy_stats.binomtest(only_variant, n_discordant).pvalue)
    low, high = bootstrap_mean_interval([differences], confidence=confidence, n_boot=n_boot, seed=seed)
    return PairedResult(
        difference_pp=float(differences.mean()),
        low=low,
        high=high,
        p_value=p_value,
        verdict=SINGLE_RUN,
        method=(
            f"one run: paired bootstrap over its {differences.size} test samples and exact McNemar p; "
            "covers test sampling only, not training variation"
        ),
        n_units=1,
        standard_error=math.nan,
        df=math.nan,
        **fields,
    )
