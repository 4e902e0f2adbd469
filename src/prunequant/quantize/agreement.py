"""How closely a quantized model follows its fp32 parent on the same inputs."""

from __future__ import annotations

import numpy as np

__all__ = ["agreement"]


def agreement(parent_logits: np.ndarray, logits: np.ndarray) -> dict:
    """Top-1 agreement and logit error of ``logits`` against ``parent_logits`` (both [N, classes]).

    Returns ``{"agreement_pct", "mean_abs_logit_error", "max_abs_logit_error"}``: the percentage of
    samples whose arg-max class matches the parent's, and the mean and max absolute difference over
    every logit. Differences are taken in float64 so that float32 rounding does not hide small errors.
    """
    parent_logits = np.asarray(parent_logits)
    logits = np.asarray(logits)
    if parent_logits.ndim != 2 or parent_logits.shape != logits.shape:
        raise ValueError(
            f"logits must be two [N, classes] arrays of one shape: got {parent_logits.shape}, {logits.shape}"
        )
    if parent_logits.size == 0:
        raise ValueError("logits are empty: agreement needs at least one sample and one class")
    error = np.abs(logits.astype(np.float64) - parent_logits.astype(np.float64))
    same = parent_logits.argmax(axis=1) == logits.argmax(axis=1)
    return {
        "agreement_pct": float(100.0 * same.mean()),
        "mean_abs_logit_error": float(error.mean()),
        "max_abs_logit_error": float(error.max()),
    }
