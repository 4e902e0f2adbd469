"""Choosing on validation data only: Pareto fronts and the recommendation under a budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prunequant.errors import UserError

__all__ = [
    "COST_COLUMNS",
    "Recommendation",
    "SELECTION_COLUMNS",
    "describe_budget",
    "pareto_mask",
    "recommend",
]

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
class Recommendation:
    """The chosen variant, a sentence saying why, and its full input row (for reporting only)."""

    variant: str
    reason: str
    row: dict


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
