"""The deployment form of a trained model: BatchNorm folded away exactly, the last pooling a crop.

Works for both architectures and any number of blocks: in a residual block BatchNorm directly
follows the pointwise conv and folds back into it; in a separable block it follows the ReLU and
folds forward into whatever consumes the block.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from prunequant.model import CropToEven, ResidualBlock

__all__ = ["fold_batchnorm", "CropToEven", "deployment_model"]


def _bn_affine(norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = scale * x + shift, in float64 to keep the fold exact."""
    var = norm.running_var.double()
    mean = norm.running_mean.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(var)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + norm.eps)
    return scale, beta - mean * scale


def _bias64(layer: nn.Conv1d | nn.Linear, n: int) -> torch.Tensor:
    return layer.bias.double() if layer.bias is not None else torch.zeros(n, dtype=torch.float64)


def _set_weight_and_bias(layer: nn.Conv1d | nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.empty(bias.shape, dtype=layer.weight.dtype))
        layer.bias.copy_(bias)


def _absorb_into_depthwise(conv: nn.Conv1d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    # Valid only without padding: a zero-padded tap would see 0, not the shift, so the
    # shift would no longer contribute exactly shift[c] * sum(taps) to every output step.
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    if conv.padding not in ((0,), 0) or not depthwise:
        raise ValueError("BatchNorm can fold only into an unpadded depthwise Conv1d")
    weight = conv.weight.double()  # [C, 1, k]
    bias = _bias64(conv, conv.out_channels) + shift * weight.sum(dim=(1, 2))
    _set_weight_and_bias(conv, weight * scale[:, None, None], bias)


def _absorb_into_preceding_conv(conv: nn.Conv1d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    # BN(conv(x)) = scale * (W x + b) + shift: exact for any padding or stride.
    weight = conv.weight.double()  # [C_out, C_in / groups, k]
    bias = _bias64(conv, conv.out_channels) * scale + shift
    _set_weight_and_bias(conv, weight * scale[:, None, None], bias)


def _absorb_into_linear(head: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> None:
    weight = head.weight.double()  # [classes, C]
    bias = _bias64(head, head.out_features) + weight @ shift
    _set_weight_and_bias(head, weight * scale[None, :], bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy with every ``block.norm`` folded away (replaced by Identity).

    Residual blocks: BatchNorm directly follows the pointwise conv and folds into it.
    Separable blocks: BatchNorm follows ReLU, so it cannot fold into the conv before it. It is
    a per-channel affine map, and AvgPool1d(2) and the global mean are linear per channel, so
    the affine moves forward unchanged into whatever consumes the block: the next block's
    depthwise conv or, after the last block, the Linear head. The result computes the same
    function.
    """
    folded = copy.deepcopy(model).eval()
    blocks = list(folded.blocks)
    for index, block in enumerate(blocks):
        if isinstance(block.norm, nn.Identity):
            continue
        scale, shift = _bn_affine(block.norm)
        if isinstance(block, ResidualBlock):
            _absorb_into_preceding_conv(block.pointwise, scale, shift)
        elif index + 1 < len(blocks):
            _absorb_into_depthwise(blocks[index + 1].depthwise, scale, shift)
        else:
            _absorb_into_linear(folded.head, scale, shift)
        block.norm = nn.Identity()
    return folded


def deployment_model(model: nn.Module) -> nn.Module:
    """The same function, cheaper to run: BatchNorm folded, and the last pooling removed.

    The last block's AvgPool1d(2) is followed only by the global mean over time, and the mean
    of pairwise means is the mean over the first 2*floor(L/2) steps. Pooling costs as much as
    the convolutions here (more in int8, whose QLinearAveragePool is slow), so the last pool
    becomes a crop.
    """
    deployed = fold_batchnorm(model)
    deployed.blocks[-1].pool = CropToEven()
    return deployed
