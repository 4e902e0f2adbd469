"""The post-training recipe methods by name (``quantize.recipes[].method``): what the quantize
stage runs for each, so that no script branches on a recipe's method.

Quantization-aware training (``qat``) trains, and has its own stage (:mod:`prunequant.quantize.qat`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from prunequant.data import PreparedDataset
from prunequant.quantize.partial import quantize_partial
from prunequant.quantize.ptq import quantize_ptq

__all__ = ["POST_TRAINING_METHODS", "quantize_by_recipe"]


def _ptq(dataset: PreparedDataset, **arguments) -> dict:
    return quantize_ptq(train_inputs=dataset.X_train, **arguments)


def _partial(dataset: PreparedDataset, **arguments) -> dict:
    # Which layers stay float is chosen on validation data only; test never reaches it.
    return quantize_partial(
        train_inputs=dataset.X_train, val_inputs=dataset.X_val, val_labels=dataset.y_val, **arguments
    )


POST_TRAINING_METHODS: dict[str, Callable[..., dict]] = {"ptq": _ptq, "partial": _partial}


def quantize_by_recipe(
    recipe: Mapping,
    *,
    dataset: PreparedDataset,
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    record_path: str | os.PathLike,
    seed: int,
) -> dict:
    """Quantize ``fp32_path`` by ``recipe`` (its ``method`` and that method's settings); the record."""
    settings = dict(recipe)
    method = settings.pop("method")
    if method not in POST_TRAINING_METHODS:
        known = ", ".join(sorted(POST_TRAINING_METHODS))
        raise ValueError(f"recipe method {method!r} is not a post-training method: use one of {known}")
    return POST_TRAINING_METHODS[method](
        dataset, fp32_path=fp32_path, int8_path=int8_path, record_path=record_path, seed=seed, **settings
    )
