"""Statistics the report can stand behind: accuracy intervals over runs, paired comparisons that
count training runs (adjusted for the many a report draws, with their power), Pareto fronts and a
recommendation chosen on validation data only.

- :mod:`~prunequant.stats.intervals`: one variant's accuracy with its interval;
- :mod:`~prunequant.stats.paired`: a variant against a reference, per run, and the family's verdicts;
- :mod:`~prunequant.stats.selection`: Pareto fronts and the recommendation under a budget.
"""

from prunequant.stats.intervals import Interval, accuracy_interval
from prunequant.stats.paired import (
    ADJUSTMENT_NAMES,
    ADJUSTMENTS,
    SINGLE_RUN,
    VERDICTS,
    PairedResult,
    adjust_p_values,
    min_detectable_difference,
    paired_comparison,
    runs_to_resolve,
    verdict,
)
from prunequant.stats.selection import (
    COST_COLUMNS,
    SELECTION_COLUMNS,
    Recommendation,
    describe_budget,
    pareto_mask,
    recommend,
)

__all__ = [
    "ADJUSTMENTS",
    "ADJUSTMENT_NAMES",
    "COST_COLUMNS",
    "Interval",
    "PairedResult",
    "Recommendation",
    "SELECTION_COLUMNS",
    "SINGLE_RUN",
    "VERDICTS",
    "accuracy_interval",
    "adjust_p_values",
    "describe_budget",
    "min_detectable_difference",
    "paired_comparison",
    "pareto_mask",
    "recommend",
    "runs_to_resolve",
    "verdict",
]
