"""Intervals, paired verdicts, Pareto fronts and the validation-only recommendation, by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from prunequant.errors import UserError
from prunequant.stats import (
    SINGLE_RUN,
    accuracy_interval,
    adjust_p_values,
    min_detectable_difference,
    paired_comparison,
    pareto_mask,
    recommend,
    runs_to_resolve,
    verdict,
)

STATS = {"confidence": 0.95, "n_boot": 1000}


def _correct(n_right: int, n: int) -> np.ndarray:
    return np.arange(n) < n_right


# --- accuracy_interval ---------------------------------------------------------------------------


def test_t_interval_over_seeds_matches_hand_computation():
    # per-run accuracies 90, 92, 94 %: mean 92, sd 2, sem 2/√3, t(0.975, df=2) = 4.302653
    runs = {"seed0": _correct(45, 50), "seed1": _correct(46, 50), "seed2": _correct(47, 50)}
    interval = accuracy_interval(runs, **STATS)
    half_width = 4.302653 * 2 / math.sqrt(3)
    assert interval.estimate == pytest.approx(92.0)
    assert interval.low == pytest.approx(92.0 - half_width, abs=1e-4)
    assert interval.high == pytest.approx(92.0 + half_width, abs=1e-4)
    assert interval.method == "t over 3 runs"


def test_t_interval_is_clipped_to_the_range_of_an_accuracy():
    interval = accuracy_interval({"a": _correct(10, 10), "b": _correct(8, 10)}, **STATS)
    assert interval.estimate == pytest.approx(90.0)
    assert interval.high == 100.0
    # accuracies 100 and 80: sem 10, t(0.975, df=1) = 12.706, so 90 ± 127 before clipping
    assert interval.low == 0.0


def test_bootstrap_over_samples_for_one_run():
    correct = _correct(360, 400)  # 90 %: normal approximation 90 ± 1.96·1.5
    interval = accuracy_interval({"seed0": correct}, confidence=0.95, n_boot=4000, seed=3)
    assert interval.method == "bootstrap over 400 test samples"
    assert interval.estimate == pytest.approx(90.0)
    assert interval.low == pytest.approx(90.0 - 1.96 * 1.5, abs=0.5)
    assert interval.high == pytest.approx(90.0 + 1.96 * 1.5, abs=0.5)
    # the bounds are accuracies a resample can reach: multiples of 1/400
    assert interval.low * 4 == pytest.approx(round(interval.low * 4))
    assert accuracy_interval({"seed0": correct}, confidence=0.95, n_boot=4000, seed=3) == interval


def test_bootstrap_of_a_perfect_run_has_no_width():
    interval = accuracy_interval({"seed0": np.ones(20, dtype=bool)}, **STATS)
    assert (interval.estimate, interval.low, interval.high) == (100.0, 100.0, 100.0)


@pytest.mark.parametrize("bad", [{}, {"a": np.array([], dtype=bool)}, {"a": np.array([0, 2, 1])}])
def test_accuracy_interval_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        accuracy_interval(bad, **STATS)


# --- paired_comparison ---------------------------------------------------------------------------


def _paired(variant, reference, **options):
    return paired_comparison(variant, reference, **STATS, **options)


def _flip(correct: np.ndarray, n: int, to: bool, rng: np.random.Generator) -> np.ndarray:
    """A copy with ``n`` samples whose correctness was ``not to`` set to ``to``."""
    flipped = correct.copy()
    candidates = np.flatnonzero(correct != to)
    flipped[rng.choice(candidates, n, replace=False)] = to
    return flipped


def test_identical_predictions_show_no_difference():
    rng = np.random.default_rng(0)
    runs = {"seed0": rng.random(200) < 0.8, "seed1": rng.random(200) < 0.7}
    result = _paired(runs, runs)
    assert (result.difference_pp, result.low, result.high) == (0.0, 0.0, 0.0)
    assert result.verdict == "no detectable difference"
    assert result.p_value == 1.0
    assert result.discordant == (0, 0)
    assert (result.n_runs, result.n_units, result.n_samples) == (2, 2, 400)


def test_differences_that_change_sign_across_runs_are_no_verdict_however_many_samples():
    # Each run has 5,000 test samples, so a bootstrap over samples would call every run's
    # difference (±2 pp) with a tight interval; across runs the sign flips, so the method is undecided.
    rng = np.random.default_rng(1)
    reference = {f"seed{i}": rng.random(5000) < 0.8 for i in range(5)}
    signs = [+1, -1, +1, -1, +1]
    variant = {
        run: _flip(correct, 100, sign > 0, rng)
        for (run, correct), sign in zip(reference.items(), signs, strict=True)
    }
    result = _paired(variant, reference)
    assert [round(d, 6) for d in result.run_differences] == [2.0, -2.0, 2.0, -2.0, 2.0]
    assert result.low < 0 < result.high
    assert result.verdict == "no detectable difference"
    # the per-run spread dominates: the interval is at least the plain t over runs
    half_width = 2.776445 * np.std(result.run_differences, ddof=1) / np.sqrt(5)
    assert result.high - result.difference_pp >= half_width - 1e-9


def test_consistent_per_run_differences_give_the_verdict():
    rng = np.random.default_rng(2)
    reference = {f"seed{i}": rng.random(1000) < 0.7 for i in range(5)}
    variant = {
        run: _flip(correct, 30 + 2 * i, False, rng) for i, (run, correct) in enumerate(reference.items())
    }
    result = _paired(variant, reference)
    assert all(d < 0 for d in result.run_differences)
    assert result.high < 0 and result.p_value < 0.05
    assert result.verdict == "worse"
    assert result.method.startswith("t over 5 runs") and result.df == 4


def test_crossed_variance_by_hand():
    # 3 runs × 4 shared samples of per-sample differences (pp): the two-way ANOVA by hand.
    reference = {f"r{i}": np.zeros(4, dtype=bool) for i in range(3)}
    variant = {
        "r0": np.array([1, 1, 0, 0], dtype=bool),
        "r1": np.array([1, 0, 0, 0], dtype=bool),
        "r2": np.array([1, 1, 1, 0], dtype=bool),
    }
    d = np.array([[100, 100, 0, 0], [100, 0, 0, 0], [100, 100, 100, 0]], dtype=float)
    grand, rows, cols = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_runs = 4 * np.sum((rows - grand) ** 2) / 2
    ms_samples = 3 * np.sum((cols - grand) ** 2) / 3
    ms_residual = np.sum((d - rows[:, None] - cols[None, :] + grand) ** 2) / 6
    variance = max(ms_runs + ms_samples - ms_residual, ms_runs) / 12
    result = _paired(variant, reference)
    assert result.difference_pp == pytest.approx(grand)
    assert result.standard_error == pytest.approx(np.sqrt(variance))
    assert result.high - result.difference_pp == pytest.approx(4.302653 * np.sqrt(variance), rel=1e-6)


def test_folds_are_the_units_and_their_seeds_are_averaged_first():
    reference = {run: np.zeros(10, dtype=bool) for run in ("f0s0", "f0s1", "f1s0", "f1s1", "f2s0")}
    variant = {
        "f0s0": _correct(2, 10),  # +20
        "f0s1": _correct(4, 10),  # +40 → fold 0: +30
        "f1s0": _correct(1, 10),  # +10
        "f1s1": _correct(3, 10),  # +30 → fold 1: +20
        "f2s0": _correct(1, 10),  # fold 2: +10
    }
    test_sets = {"f0s0": "fold0", "f0s1": "fold0", "f1s0": "fold1", "f1s1": "fold1", "f2s0": "fold2"}
    result = _paired(variant, reference, test_sets=test_sets)
    assert (result.n_runs, result.n_units, result.df) == (5, 3, 2)
    assert result.difference_pp == pytest.approx(20.0)  # mean of fold means 30, 20, 10
    assert result.standard_error == pytest.approx(10.0 / np.sqrt(3))
    assert "3 test sets" in result.method


def test_one_run_gives_no_method_verdict_and_says_so():
    reference = np.ones(100, dtype=bool)
    variant = _correct(70, 100)
    result = _paired({"s": variant}, {"s": reference})
    assert result.difference_pp == pytest.approx(-30.0)
    assert result.high < 0  # the sample-level interval excludes zero …
    assert result.verdict == SINGLE_RUN  # … and still no verdict about the method
    assert not result.is_method_comparison
    assert "test sampling only" in result.method
    assert result.p_value == pytest.approx(2 * 0.5**30)  # exact McNemar, as a sample-level p
    assert np.isnan(min_detectable_difference(result, confidence=0.95, power=0.8))


def test_discordant_pairs_and_exact_mcnemar_p_by_hand():
    reference = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    variant = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 0], dtype=bool)
    result = _paired({"seed0": variant}, {"seed0": reference})
    # 3 samples only the variant got right, 1 only the reference: (3 - 1) / 10 = +20 pp;
    # two-sided binomial p for 3 of 4 at 1/2: 2 · (4 + 1) / 16 = 0.625
    assert result.difference_pp == pytest.approx(20.0)
    assert result.discordant == (3, 1)
    assert result.p_value == pytest.approx(0.625)
    assert result.low <= result.difference_pp <= result.high


def test_only_common_runs_are_compared():
    reference = {"seed0": np.zeros(10, dtype=bool), "seed1": np.array([1, 0] + [1] * 8, dtype=bool)}
    variant = {
        "seed0": _correct(2, 10),  # +20 pp, discordant (2, 0)
        "seed1": np.array([0, 1] + [1] * 8, dtype=bool),  # 0 pp, discordant (1, 1)
        "seed9": np.ones(10, dtype=bool),  # no reference for this run: ignored
    }
    result = _paired(variant, reference)
    assert result.n_runs == 2
    assert result.run_differences == (20.0, 0.0)
    assert result.difference_pp == pytest.approx(10.0)
    assert result.discordant == (3, 1)


def test_paired_comparison_rejects_mismatched_runs():
    with pytest.raises(ValueError, match="no run in common"):
        _paired({"a": np.ones(3, dtype=bool)}, {"b": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="samples"):
        _paired({"a": np.ones(3, dtype=bool)}, {"a": np.ones(4, dtype=bool)})


# --- multiplicity and power ----------------------------------------------------------------------


def test_holm_adjustment_against_a_hand_computed_example():
    # sorted p 0.01, 0.02, 0.03, 0.04 (m = 4): 4·0.01 = 0.04, 3·0.02 = 0.06, 2·0.03 = 0.06
    # (kept monotone), 1·0.04 = 0.04 → 0.06; returned in the input order, NaN left out.
    adjusted = adjust_p_values([0.03, np.nan, 0.01, 0.04, 0.02], "holm")
    assert adjusted[[0, 2, 3, 4]] == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert np.isnan(adjusted[1])
    # Benjamini–Hochberg: p·m/rank, then the running minimum from the top: all 0.04
    assert adjust_p_values([0.01, 0.02, 0.03, 0.04], "benjamini_hochberg") == pytest.approx([0.04] * 4)
    assert adjust_p_values([0.01, 0.2], "none") == pytest.approx([0.01, 0.2])
    with pytest.raises(ValueError, match="adjustment"):
        adjust_p_values([0.1], "bonferroni-ish")


def test_verdict_follows_the_adjusted_p_and_the_sign():
    assert verdict(-1.2, 0.01, alpha=0.05) == "worse"
    assert verdict(+1.2, 0.049, alpha=0.05) == "better"
    assert verdict(+1.2, 0.05, alpha=0.05) == "no detectable difference"
    assert verdict(+1.2, float("nan"), alpha=0.05) == "no detectable difference"


def test_min_detectable_difference_has_the_power_it_claims():
    rng = np.random.default_rng(4)
    reference = {f"seed{i}": rng.random(400) < 0.8 for i in range(5)}
    variant = {run: _flip(c, 5 + 3 * i, i % 2 == 0, rng) for i, (run, c) in enumerate(reference.items())}
    result = _paired(variant, reference)
    detectable = min_detectable_difference(result, confidence=0.95, power=0.8)
    # by hand: the two-sided t-test on 4 df rejects when |T| > t(0.975, 4); with a true difference
    # of `detectable`, T is noncentral t with noncentrality detectable / SE: its power must be 0.8.
    critical = scipy_stats.t.ppf(0.975, 4)
    noncentrality = detectable / result.standard_error
    power = scipy_stats.nct.sf(critical, 4, noncentrality) + scipy_stats.nct.cdf(-critical, 4, noncentrality)
    assert power == pytest.approx(0.8, abs=1e-4)
    # and it lies near the textbook approximation (t(0.975) + t(0.8)) · SE
    approximation = (critical + scipy_stats.t.ppf(0.8, 4)) * result.standard_error
    assert detectable == pytest.approx(approximation, rel=0.1)


def test_runs_to_resolve_is_the_first_run_count_with_enough_power():
    runs = runs_to_resolve(2.0, 1.0, confidence=0.95, power=0.8)

    def achieved(n):
        critical = scipy_stats.t.ppf(0.975, n - 1)
        noncentrality = 1.0 / (2.0 / np.sqrt(n))
        return scipy_stats.nct.sf(critical, n - 1, noncentrality) + scipy_stats.nct.cdf(
            -critical, n - 1, noncentrality
        )

    assert achieved(runs) >= 0.8 > achieved(runs - 1)
    assert runs_to_resolve(0.0, 1.0, confidence=0.95, power=0.8) == 2


# --- pareto_mask ---------------------------------------------------------------------------------


def test_pareto_mask_on_a_hand_made_table():
    cost = np.array([1, 2, 2, 3, 4, 4, 5])
    accuracy = np.array([80, 85, 84, 85, 90, 90, 89])
    # (2, 84) loses to (2, 85) on accuracy; (3, 85) loses to (2, 85) on cost; the two (4, 90) tie
    # and both stay; (5, 89) loses to (4, 90) on both.
    expected = [True, True, False, False, True, True, False]
    assert pareto_mask(cost, accuracy).tolist() == expected


def test_pareto_mask_ignores_missing_values():
    assert pareto_mask([np.nan, 5.0], [99.0, 50.0]).tolist() == [False, True]
    assert pareto_mask([3.0], [1.0]).tolist() == [True]
    with pytest.raises(ValueError):
        pareto_mask([1.0, 2.0], [1.0])


# --- recommend -----------------------------------------------------------------------------------


def _variants() -> pd.DataFrame:
    """A hand-made per-variant table; test accuracies are set so that choosing on them would differ."""
    rows = [
        # variant, val accuracy, weight bytes, MACs, latency b1, latency b64, test accuracy
        ("baseline/fp32", 95.0, 20000, 100, 1.0, 10.0, 90.0),
        ("pruned/fp32", 94.0, 10000, 50, 0.6, 5.0, 99.0),
        ("sparse/fp32", 94.5, 4000, 100, 1.0, 10.0, 80.0),
        ("baseline/int8", 94.8, 5000, 100, 0.5, 3.0, 70.0),
        ("pruned/int8", 92.0, 2500, 50, 0.4, 2.0, 99.5),
        ("scratch/fp32", 90.0, 10000, 50, np.nan, np.nan, 99.9),
    ]
    columns = ["variant", "val_accuracy", "weight_bytes", "macs", "latency_batch1_ms", "latency_batch64_ms"]
    table = pd.DataFrame([row[:-1] for row in rows], columns=columns)
    table["accuracy"] = [row[-1] for row in rows]
    table["accuracy_low"] = table["accuracy"] - 1
    return table


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ({"max_drop_pp": 0.0}, "baseline/fp32"),  # only the reference meets a zero drop
        ({"max_drop_pp": 0.3}, "baseline/int8"),  # quantized
        ({"max_drop_pp": 1.0}, "sparse/fp32"),  # unstructured
        ({"max_drop_pp": 3.0}, "pruned/int8"),  # pruned and quantized
        ({"max_drop_pp": 1.0, "objective": "macs"}, "pruned/fp32"),  # structured
        # macs tie between pruned/fp32 and pruned/int8: the higher validation accuracy wins
        ({"max_drop_pp": 3.0, "objective": "macs"}, "pruned/fp32"),
        ({"max_drop_pp": 1.0, "max_latency_ms": 0.55}, "baseline/int8"),
        ({"max_drop_pp": 3.0, "max_weight_bytes": 4500, "objective": "latency_batch64_ms"}, "pruned/int8"),
    ],
)
def test_recommend_selects_each_kind_of_variant(budget, expected):
    recommendation = recommend(_variants(), reference_variant="baseline/fp32", **budget)
    assert recommendation is not None
    assert recommendation.variant == expected
    assert recommendation.row["variant"] == expected
    assert "test split was not used" in recommendation.reason


def test_recommend_says_when_the_reference_itself_is_chosen():
    recommendation = recommend(_variants(), reference_variant="baseline/fp32", max_drop_pp=0.0)
    assert "reference itself" in recommendation.reason


def test_recommend_returns_none_when_nothing_meets_the_budget():
    assert (
        recommend(_variants(), reference_variant="baseline/fp32", max_drop_pp=1.0, max_weight_bytes=1000)
        is None
    )


def test_recommend_skips_variants_without_the_limited_latency():
    # scratch/fp32 meets the accuracy budget and has no latency: it cannot be shown to meet the limit
    chosen = recommend(
        _variants(),
        reference_variant="baseline/fp32",
        max_drop_pp=10.0,
        max_latency_ms=100.0,
        objective="macs",
    )
    assert chosen.variant == "pruned/fp32"


def test_recommend_ignores_test_columns():
    table = _variants()
    scrambled = table.assign(accuracy=table["accuracy"].to_numpy()[::-1], accuracy_low=0.0, loss=1.0)
    for budget in (0.3, 1.0, 3.0):
        chosen = recommend(table, reference_variant="baseline/fp32", max_drop_pp=budget)
        again = recommend(scrambled, reference_variant="baseline/fp32", max_drop_pp=budget)
        assert (chosen.variant, chosen.reason) == (again.variant, again.reason)


def test_recommend_rejects_bad_settings():
    with pytest.raises(UserError, match="objective"):
        recommend(_variants(), reference_variant="baseline/fp32", max_drop_pp=1.0, objective="accuracy")
    with pytest.raises(UserError, match="not among"):
        recommend(_variants(), reference_variant="nope/fp32", max_drop_pp=1.0)
    with pytest.raises(UserError, match="drop"):
        recommend(_variants(), reference_variant="baseline/fp32", max_drop_pp=-1.0)
