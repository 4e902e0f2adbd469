"""Intervals, paired verdicts, Pareto fronts and the validation-only recommendation, by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from prunequant.errors import UserError
from prunequant.stats import accuracy_interval, paired_comparison, pareto_mask, recommend


def _correct(n_right: int, n: int) -> np.ndarray:
    return np.arange(n) < n_right


# --- accuracy_interval ---------------------------------------------------------------------------


def test_t_interval_over_seeds_matches_hand_computation():
    # per-run accuracies 90, 92, 94 %: mean 92, sd 2, sem 2/√3, t(0.975, df=2) = 4.302653
    runs = {"seed0": _correct(45, 50), "seed1": _correct(46, 50), "seed2": _correct(47, 50)}
    interval = accuracy_interval(runs)
    half_width = 4.302653 * 2 / math.sqrt(3)
    assert interval.estimate == pytest.approx(92.0)
    assert interval.low == pytest.approx(92.0 - half_width, abs=1e-4)
    assert interval.high == pytest.approx(92.0 + half_width, abs=1e-4)
    assert interval.method == "t over 3 runs"


def test_t_interval_is_clipped_to_the_range_of_an_accuracy():
    interval = accuracy_interval({"a": _correct(10, 10), "b": _correct(8, 10)})
    assert interval.estimate == pytest.approx(90.0)
    assert interval.high == 100.0
    # accuracies 100 and 80: sem 10, t(0.975, df=1) = 12.706, so 90 ± 127 before clipping
    assert interval.low == 0.0


def test_bootstrap_over_samples_for_one_run():
    correct = _correct(360, 400)  # 90 %: normal approximation 90 ± 1.96·1.5
    interval = accuracy_interval({"seed0": correct}, n_boot=4000, seed=3)
    assert interval.method == "bootstrap over 400 test samples"
    assert interval.estimate == pytest.approx(90.0)
    assert interval.low == pytest.approx(90.0 - 1.96 * 1.5, abs=0.5)
    assert interval.high == pytest.approx(90.0 + 1.96 * 1.5, abs=0.5)
    # the bounds are accuracies a resample can reach: multiples of 1/400
    assert interval.low * 4 == pytest.approx(round(interval.low * 4))
    assert accuracy_interval({"seed0": correct}, n_boot=4000, seed=3) == interval


def test_bootstrap_of_a_perfect_run_has_no_width():
    interval = accuracy_interval({"seed0": np.ones(20, dtype=bool)})
    assert (interval.estimate, interval.low, interval.high) == (100.0, 100.0, 100.0)


@pytest.mark.parametrize("bad", [{}, {"a": np.array([], dtype=bool)}, {"a": np.array([0, 2, 1])}])
def test_accuracy_interval_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        accuracy_interval(bad)


# --- paired_comparison ---------------------------------------------------------------------------


def test_identical_predictions_show_no_difference():
    rng = np.random.default_rng(0)
    runs = {"seed0": rng.random(200) < 0.8, "seed1": rng.random(200) < 0.7}
    result = paired_comparison(runs, runs)
    # a broken pairing (independent resampling of the two sides) would give a non-zero width here
    assert (result.difference_pp, result.low, result.high) == (0.0, 0.0, 0.0)
    assert result.verdict == "no detectable difference"
    assert result.p_value == 1.0
    assert result.discordant == (0, 0)
    assert (result.n_runs, result.n_samples) == (2, 400)


def test_discordant_pairs_and_exact_mcnemar_p_by_hand():
    reference = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    variant = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 0], dtype=bool)
    result = paired_comparison({"seed0": variant}, {"seed0": reference})
    # 3 samples only the variant got right, 1 only the reference: (3 - 1) / 10 = +20 pp;
    # two-sided binomial p for 3 of 4 at 1/2: 2 · (4 + 1) / 16 = 0.625
    assert result.difference_pp == pytest.approx(20.0)
    assert result.discordant == (3, 1)
    assert result.p_value == pytest.approx(0.625)
    assert result.low <= result.difference_pp <= result.high


def test_pooled_over_runs_and_only_common_runs():
    reference = {"seed0": np.zeros(10, dtype=bool), "seed1": np.array([1, 0] + [1] * 8, dtype=bool)}
    variant = {
        "seed0": _correct(2, 10),  # +20 pp, discordant (2, 0)
        "seed1": np.array([0, 1] + [1] * 8, dtype=bool),  # 0 pp, discordant (1, 1)
        "seed9": np.ones(10, dtype=bool),  # no reference for this run: ignored
    }
    result = paired_comparison(variant, reference)
    assert result.n_runs == 2
    assert result.difference_pp == pytest.approx(10.0)
    assert result.discordant == (3, 1)
    assert result.p_value == pytest.approx(0.625)


def test_clearly_worse_variant_gets_worse_verdict():
    reference = np.ones(100, dtype=bool)
    variant = _correct(70, 100)
    result = paired_comparison({"s": variant}, {"s": reference})
    assert result.difference_pp == pytest.approx(-30.0)
    assert result.high < 0
    assert result.verdict == "worse"
    assert result.p_value == pytest.approx(2 * 0.5**30)


def test_constant_difference_gives_degenerate_interval_and_better_verdict():
    result = paired_comparison({"s": np.ones(5, dtype=bool)}, {"s": np.zeros(5, dtype=bool)})
    assert (result.difference_pp, result.low, result.high) == (100.0, 100.0, 100.0)
    assert result.verdict == "better"


def test_paired_comparison_rejects_mismatched_runs():
    with pytest.raises(ValueError, match="no run in common"):
        paired_comparison({"a": np.ones(3, dtype=bool)}, {"b": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="samples"):
        paired_comparison({"a": np.ones(3, dtype=bool)}, {"a": np.ones(4, dtype=bool)})


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
