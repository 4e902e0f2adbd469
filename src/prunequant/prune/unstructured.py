"""Unstructured magnitude pruning: zero the smallest weights, hold them at zero, count the bytes.

Masked layers are the weights of every Conv1d (depthwise, pointwise and 1x1 skip convs) and
of the linear head: they hold almost all parameters. Biases and BatchNorm parameters are left
dense: they are a few per channel, and zeroing a bias or a BatchNorm shift does not remove a
connection, it shifts an activation. Masks are boolean tensors shaped like the weight, True
where the weight is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from prunequant.prune.checks import check_choice, check_fraction, check_not_prunable

__all__ = [
    "SPARSITY_SCOPES",
    "maskable_layers",
    "magnitude_masks",
    "apply_masks",
    "mask_holder",
    "sparsity_record",
    "storage_bytes",
    "storage_explanation",
]

SPARSITY_SCOPES = ("layer", "global")


def maskable_layers(model: nn.Module, not_prunable: Sequence[str] = ()) -> dict[str, nn.Module]:
    """Module name → every Conv1d and Linear, except those inside a ``not_prunable`` block."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv1d, nn.Linear))
        and not any(name == block or name.startswith(block + ".") for block in not_prunable)
    }


def _keep_all_but_smallest(magnitudes: torch.Tensor, n_zero: int) -> torch.Tensor:
    """Boolean keep-mask over a flat tensor: False at the ``n_zero`` smallest (ties: lower index)."""
    order = torch.argsort(magnitudes, stable=True)
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    keep[order[:n_zero]] = False
    return keep


def magnitude_masks(
    model: nn.Module, sparsity: float, *, scope: str = "layer", not_prunable: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Keep-masks zeroing the ``sparsity`` share of smallest-|w| weights, per layer or over all layers.

    ``layer``: each layer loses round(sparsity·n) weights. ``global``: one ranking of |w| over
    every masked layer (weights share one scale after training with BatchNorm between layers).
    Either way every layer keeps at least its largest weight, so no layer is cut off.
    """
    check_fraction("sparsity", sparsity)
    check_choice("sparsity scope", scope, SPARSITY_SCOPES)
    check_not_prunable(not_prunable, len(model.blocks))
    layers = maskable_layers(model, not_prunable)
    weights = {name: layer.weight.detach().cpu() for name, layer in layers.items()}
    if scope == "layer":
        flat = {
            name: _keep_all_but_smallest(
                w.abs().flatten(), min(math.floor(sparsity * w.numel() + 0.5), w.numel() - 1)
            )
            for name, w in weights.items()
        }
    else:
        magnitudes = torch.cat([w.abs().flatten() for w in weights.values()])
        keep_all = _keep_all_but_smallest(magnitudes, math.floor(sparsity * magnitudes.numel() + 0.5))
        flat, start = {}, 0
        for name, w in weights.items():
            keep = keep_all[start : start + w.numel()].clone()
            start += w.numel()
            if not keep.any():
                keep[w.abs().flatten().argmax()] = True
            flat[name] = keep
    return {name: flat[name].reshape(w.shape) for name, w in weights.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked weights in place (also how masks are made permanent after fine-tuning)."""
    modules = dict(model.named_modules())
    for name, keep in masks.items():
        weight = modules[name].weight
        weight.mul_(keep.to(device=weight.device, dtype=weight.dtype))


def mask_holder(model: nn.Module, masks: dict[str, torch.Tensor]) -> Callable[[], None]:
    """A callable for ``engine.train(after_step=...)`` that re-zeroes masked weights after each step.

    The optimizer (Adam's momentum in particular) moves zeroed weights off zero at every step;
    zeroing them again after each step keeps the mask through fine-tuning.
    """
    modules = dict(model.named_modules())
    missing = sorted(set(masks) - set(modules))
    if missing:
        raise ValueError(f"masks name layers the model does not have: {missing}")

    def hold() -> None:
        apply_masks(model, masks)

    return hold


def sparsity_record(model: nn.Module) -> dict:
    """Per maskable layer: weights, zeros, sparsity; totals over them; nonzero parameters overall."""
    layers = {}
    for name, layer in maskable_layers(model).items():
        n = layer.weight.numel()
        zeros = int((layer.weight == 0).sum())
        layers[name] = {"weights": n, "zeros": zeros, "sparsity": zeros / n}
    weights = sum(row["weights"] for row in layers.values())
    zeros = sum(row["zeros"] for row in layers.values())
    return {
        "layers": layers,
        "totals": {"weights": weights, "zeros": zeros, "sparsity": zeros / weights if weights else 0.0},
        "parameters": sum(p.numel() for p in model.parameters()),
        "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
    }


def index_bytes(largest_value: int) -> int:
    """Narrowest unsigned integer (1, 2 or 4 bytes) that holds ``largest_value``."""
    return 1 if largest_value < 2**8 else 2 if largest_value < 2**16 else 4


def _weight_bytes(weight: torch.Tensor) -> dict[str, int]:
    """Bytes of one weight tensor, viewed as a matrix [out channels, fan-in], in each format.

    - dense: 4 bytes (fp32) or 1 byte (int8) per weight.
    - CSR (scipy.sparse.csr_matrix layout): each nonzero's value, plus its column index in
      ``index_bytes(columns - 1)`` bytes, plus rows + 1 row pointers in ``index_bytes(nnz)`` bytes.
    - bitmask: each nonzero's value, plus one bit per weight (rounded up to whole bytes).
    - int8 formats add one fp32 scale per output channel (symmetric per-channel quantization,
      as the int8 export does; no zero point).
    """
    import scipy.sparse  # here, not at the top: every training job imports this module, few measure storage

    matrix = scipy.sparse.csr_matrix(weight.detach().cpu().reshape(weight.shape[0], -1).numpy())
    rows, columns = matrix.shape
    nnz = int(matrix.nnz)
    csr_indices = matrix.indices.size * index_bytes(columns - 1) + matrix.indptr.size * index_bytes(nnz)
    bitmask = math.ceil(rows * columns / 8)
    scales = 4 * rows
    return {
        "dense_fp32": 4 * rows * columns,
        "dense_int8": rows * columns + scales,
        "csr_fp32": 4 * nnz + csr_indices,
        "bitmask_fp32": 4 * nnz + bitmask,
        "csr_int8": nnz + csr_indices + scales,
        "bitmask_int8": nnz + bitmask + scales,
    }


def storage_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes to store the model's parameters in each format (see :func:`_weight_bytes`).

    Conv and linear weights are stored in the named format; every other parameter (biases,
    BatchNorm γ and β) stays dense fp32 in every format. Buffers (BatchNorm running
    statistics) are not counted: deployment folds them into the weights.
    """
    layers = maskable_layers(model)
    weight_ids = {id(layer.weight) for layer in layers.values()}
    other = 4 * sum(p.numel() for p in model.parameters() if id(p) not in weight_ids)
    totals = dict.fromkeys(
        ("dense_fp32", "dense_int8", "csr_fp32", "bitmask_fp32", "csr_int8", "bitmask_int8"), other
    )
    for layer in layers.values():
        for key, value in _weight_bytes(layer.weight).items():
            totals[key] += value
    return totals


def storage_explanation(storage: dict[str, int]) -> str:
    """Where the indices eat the saving, in a few sentences, from :func:`storage_bytes` counts."""
    dense, dense8 = storage["dense_fp32"], storage["dense_int8"]

    def share(key: str, reference: int) -> str:
        return f"{key} {storage[key]} B = {storage[key] / reference:.0%} of {reference} B"

    return (
        "Sparse formats store only the nonzero values but add indices: CSR one column index per "
        "nonzero (1 byte up to 256 columns, 2 up to 65,536) plus a row pointer per row; a bitmask one "
        "bit per weight. With fp32 values a 1-byte index adds a quarter to each kept weight, so CSR "
        "wins only above ~20% sparsity (~50% with 4-byte indices); with int8 values the index is as "
        "large as the value, so CSR int8 needs >50% sparsity to beat dense int8 and the bitmask "
        f"(1/8 byte per weight) needs >12.5%. Here: {share('csr_fp32', dense)}, "
        f"{share('bitmask_fp32', dense)}, {share('csr_int8', dense8)}, {share('bitmask_int8', dense8)}."
    )
