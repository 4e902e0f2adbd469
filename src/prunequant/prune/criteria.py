"""Channel importance criteria: one score per output channel of every block's pointwise conv.

A higher score means a more important channel; pruning removes the lowest-scoring ones.

- ``l1``, ``l2``: norm of each channel's pointwise filter (Li et al., 2017).
- ``bn_scale``: |γ| of the block's BatchNorm, the per-channel scale that network slimming
  (Liu et al., 2017) drives towards zero.
- ``taylor``: first-order Taylor estimate of the loss change when the channel is removed
  (Molchanov et al., 2017): |Σ_t a·∂L/∂a| per sample, summed over every training sample, where
  ``a`` is the BatchNorm output. The BatchNorm output is the channel's whole contribution
  downstream: in the separable CNN BatchNorm follows the ReLU, so zeroing the conv output would
  still leave BatchNorm's shift β − γμ/σ flowing on, while zeroing the BatchNorm output is
  exactly what removing the channel does; in the residual CNN it is the block's own part
  before the skip is added.
- ``random``: uniform scores from a generator seeded with ``seed``, a control.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from prunequant.names import SettingError
from prunequant.prune.checks import check_choice

__all__ = ["CRITERIA", "channel_scores"]

Scores = dict[str, torch.Tensor]


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(f"blocks.{index}", block) for index, block in enumerate(model.blocks)]


def _weight_norm_scores(model: nn.Module, order: int) -> Scores:
    return {
        name: block.pointwise.weight.detach().flatten(1).norm(p=order, dim=1).cpu()
        for name, block in _blocks(model)
    }


def l1_scores(model: nn.Module, **_) -> Scores:
    """L1 norm of each output channel's pointwise filter."""
    return _weight_norm_scores(model, 1)


def l2_scores(model: nn.Module, **_) -> Scores:
    """L2 norm of each output channel's pointwise filter."""
    return _weight_norm_scores(model, 2)


def bn_scale_scores(model: nn.Module, **_) -> Scores:
    """|γ| of the BatchNorm that follows each pointwise conv."""
    return {name: block.norm.weight.detach().abs().cpu() for name, block in _blocks(model)}


def random_scores(model: nn.Module, *, seed: int, **_) -> Scores:
    """Uniform random scores, the same for the same ``seed`` and model shape."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(block.pointwise.out_channels, generator=generator) for name, block in _blocks(model)
    }


def taylor_scores(
    model: nn.Module, *, data: tuple[torch.Tensor, torch.Tensor] | None, batch_size: int, **_
) -> Scores:
    """Σ over samples of |Σ_t a·∂L/∂a| with ``a`` each block's BatchNorm output.

    The loss is the mean cross-entropy of each batch; batches are taken in order (no
    shuffling) with BatchNorm in eval mode, so the scores depend only on the data.
    """
    if data is None:
        raise SettingError("criterion 'taylor' needs data=(x_train, y_train) to compute gradients")
    scoring = copy.deepcopy(model).cpu().eval()  # gradients must not land on the caller's model
    activations: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            output.retain_grad()
            activations[name] = output

        return hook

    handles = [block.norm.register_forward_hook(keep(name)) for name, block in _blocks(scoring)]
    totals = {name: torch.zeros(block.pointwise.out_channels) for name, block in _blocks(scoring)}
    x_all, y_all = (t.cpu() for t in data)
    try:
        with torch.enable_grad():
            for start in range(0, len(x_all), batch_size):
                scoring.zero_grad(set_to_none=True)
                logits = scoring(x_all[start : start + batch_size])
                nn.functional.cross_entropy(logits, y_all[start : start + batch_size]).backward()
                for name, activation in activations.items():
                    per_sample = (activation * activation.grad).sum(dim=-1).abs()  # [N, C]
                    totals[name] += per_sample.sum(dim=0).detach()
    finally:
        for handle in handles:
            handle.remove()
    return totals


# Importance criteria, by the name the config uses. Each takes the model and keyword
# arguments data, seed, batch_size (ignoring those it does not need).
CRITERIA: dict[str, Callable[..., Scores]] = {
    "l1": l1_scores,
    "l2": l2_scores,
    "bn_scale": bn_scale_scores,
    "taylor": taylor_scores,
    "random": random_scores,
}


def channel_scores(
    model: nn.Module,
    criterion: str,
    *,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> Scores:
    """Block name → one score per pointwise output channel (float tensors on the CPU)."""
    check_choice("pruning criterion", criterion, CRITERIA)
    return CRITERIA[criterion](model, data=data, seed=seed, batch_size=batch_size)
