"""A variant's accuracy over runs, with its interval, and the checks every statistic here shares.

Conventions of the ``prunequant.stats`` package:

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
from scipy import stats as scipy_stats

__all__ = ["Interval", "accuracy_interval", "check_confidence", "check_runs"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided interval, in percent, and how the interval was made."""

    estimate: float
    low: float
    high: float
    method: str


def accuracy_interval(
    correct_by_run: Mapping[str, np.ndarray],
    *,
    confidence: float,
    n_boot: int,
    seed: int = 0,
    split: str = "test",
) -> Interval:
    """Mean accuracy over runs with a ``confidence`` interval, in percent.

    Several runs: Student-t interval of the per-run accuracies, so it covers seed-to-seed variation
    (clipped to [0, 100], the range an accuracy can take). One run: percentile bootstrap over its
    samples, which only covers the finite ``split`` (named in the method text).
    """
    check_confidence(confidence)
    runs = check_runs(correct_by_run, "correct_by_run")
    if len(runs) >= 2:
        accuracies = np.array([100.0 * correct.mean() for correct in runs.values()])
        mean = float(accuracies.mean())
        sem = float(accuracies.std(ddof=1)) / math.sqrt(len(accuracies))
        half_width = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=len(accuracies) - 1)) * sem
        low, high = max(0.0, mean - half_width), min(100.0, mean + half_width)
        return Interval(mean, low, high, f"t over {len(accuracies)} runs")
    (correct,) = runs.values()
    low, high = bootstrap_mean_interval(
        [100.0 * correct.astype(float)], confidence=confidence, n_boot=n_boot, seed=seed
    )
    return Interval(
        float(100.0 * correct.mean()), low, high, f"bootstrap over {correct.size} {split} samples"
    )


def bootstrap_mean_interval(
    samples: list[np.ndarray], *, confidence: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over groups of each group's mean.

    scipy resamples each array on its own: one array per run stratifies the resampling by run, and
    an array of per-sample paired differences resamples the (variant, reference) pairs together.
    """

    def mean_of_means(*groups: np.ndarray, axis: int) -> np.ndarray:
        return np.mean([group.mean(axis=axis) for group in groups], axis=0)

    result = scipy_stats.bootstrap(
        tuple(samples),
        mean_of_means,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def check_runs(correct_by_run: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The runs' arrays as booleans; ValueError naming ``name`` when one is not a 1-D 0/1 array."""
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


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
