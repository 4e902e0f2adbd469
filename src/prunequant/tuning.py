"""Baseline tuning: a grid of batch sizes × learning rates, chosen on validation accuracy only.

Every grid point ("candidate", e.g. ``bs32-lr0.001``) is trained once per run, as its own job.
For each data split, the candidate with the best mean validation accuracy over that split's runs
becomes the baseline of every one of those runs, and pruning and quantization start from it. The
choice reads the validation rows of each candidate's predictions and nothing else, so the test
split cannot sway it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.errors import UserError
from prunequant.io import read_json, write_json
from prunequant.variants import parse_candidate

__all__ = ["adopt_candidate", "choose_candidate", "tuning_table"]

PathLike = str | os.PathLike


def _validation_correct(predictions_path: PathLike) -> np.ndarray:
    table = pd.read_csv(predictions_path, usecols=["split", "correct"])
    return table.loc[table["split"] == "val", "correct"].to_numpy(bool)


def tuning_table(
    predictions: Mapping[str, Mapping[str, PathLike]],
    evaluations: Mapping[str, Mapping[str, PathLike]],
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """One row per candidate, in grid order: its validation accuracy over runs, with an interval.

    ``predictions`` and ``evaluations`` map candidate → run → that run's predictions CSV and
    evaluation JSON. Only the CSV's validation rows and the JSON's ``val_loss`` are read. The
    interval is a t-interval over runs, or a bootstrap over validation samples with one run.
    """
    # Imported here: adopting a choice needs no statistics (and no scipy import).
    from prunequant.stats import accuracy_interval

    if not predictions:
        raise UserError("baseline tuning: the grid has no candidate")
    rows = []
    for candidate, by_run in predictions.items():
        correct = {run: _validation_correct(path) for run, path in by_run.items()}
        if any(values.size == 0 for values in correct.values()):
            raise UserError(f"baseline tuning: {candidate} has no validation predictions to choose on")
        interval = accuracy_interval(correct, confidence=confidence, n_boot=n_boot, split="validation")
        batch_size, lr = parse_candidate(candidate)
        losses = [read_json(path)["val_loss"] for path in evaluations[candidate].values()]
        rows.append(
            {
                "candidate": candidate,
                "batch_size": batch_size,
                "lr": lr,
                "val_accuracy": interval.estimate,
                "val_accuracy_low": interval.low,
                "val_accuracy_high": interval.high,
                "interval_method": interval.method,
                "confidence": confidence,
                "val_loss": float(np.mean(losses)),
                "runs": len(correct),
                "val_accuracy_by_run": " ".join(
                    f"{run}={100.0 * values.mean():.2f}" for run, values in sorted(correct.items())
                ),
            }
        )
    return pd.DataFrame(rows)


def choose_candidate(table: pd.DataFrame) -> str:
    """The candidate of a :func:`tuning_table` with the best mean validation accuracy.

    Ties go to the lower mean validation loss, then to the earlier grid point.
    """
    ranked = table.assign(grid_order=range(len(table))).sort_values(
        ["val_accuracy", "val_loss", "grid_order"], ascending=[False, True, True]
    )
    return str(ranked.iloc[0]["candidate"])


def adopt_candidate(
    choice_path: PathLike,
    candidates: Mapping[str, Mapping[str, PathLike]],
    baseline: Mapping[str, PathLike],
) -> str:
    """Copy the chosen candidate's files to the baseline's, key by key (``model``, ``evaluation``, …).

    ``candidates`` maps candidate → key → path, ``baseline`` key → path. The evaluation keeps every
    score and gains ``tuned_from``; its ``artifact`` points at the baseline's copy. Returns the
    chosen candidate.
    """
    chosen = read_json(choice_path)["chosen"]
    if chosen not in candidates:
        raise UserError(f"baseline tuning: the chosen candidate {chosen} is not in this run's grid")
    files = candidates[chosen]
    for key, target in baseline.items():
        if key != "evaluation":
            shutil.copyfile(files[key], target)
    evaluation = read_json(files["evaluation"])
    evaluation["artifact"] = Path(baseline["model"]).as_posix()
    evaluation["tuned_from"] = chosen
    write_json(evaluation, baseline["evaluation"])
    return chosen
