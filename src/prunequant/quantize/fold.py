"""The deployment form of a trained model: the one graph that fp32 and int8 are both exported from.

BatchNorm is folded away exactly, the last pooling becomes a crop, and that crop sits as early as
it stays exact: on the model input for separable blocks, where every op before it is an unpadded
conv, a ReLU or a pooling. Works for both architectures and any number of blocks: in a residual
block BatchNorm directly follows the pointwise conv and folds back into it; in a separable block it
follows the ReLU and folds forward into whatever consumes the block.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from prunequant.model import CropToEven, ResidualBlock, SeparableBlock

__all__ = ["fold_batchnorm", "DeploymentForm", "deployment_model", "crop_to_steps_used", "input_steps_used"]


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


def input_steps_used(length: int, windows: tuple[tuple[int, int], ...]) -> int:
    """Leading input steps that a separable stack ending in a crop to even length reads.

    ``windows`` holds each block's depthwise (kernel, stride); every block but the last ends in
    AvgPool1d(2), the last in the crop. An unpadded conv's first n outputs read its first
    (n - 1) * stride + kernel inputs, and a pool's first n outputs its first 2n. Returns
    ``length`` when the last block's output is already even: then no computed step is dropped,
    and a crop would only add a copy.
    """
    steps = length
    for index, (kernel, stride) in enumerate(windows):
        steps = (steps - kernel) // stride + 1
        if index + 1 < len(windows):
            steps //= 2
    if steps % 2 == 0:
        return length
    steps -= 1
    for index, (kernel, stride) in reversed(list(enumerate(windows))):
        if index + 1 < len(windows):
            steps *= 2
        steps = (steps - 1) * stride + kernel
    return steps


@torch.fx.wrap  # a leaf of traced graphs (the QAT model): how far it crops depends on the input length
def crop_to_steps_used(x: torch.Tensor, windows: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """``x`` cropped to its first :func:`input_steps_used` steps (``x`` itself when that is all)."""
    steps = input_steps_used(x.shape[-1], windows)
    return x if steps == x.shape[-1] else x[..., :steps]


class DeploymentForm(nn.Module):
    """A folded model's blocks and head, computing the model's function with fewer steps and ops.

    ``input_windows`` (separable stacks only): each block's depthwise (kernel, stride), by which
    the input is cropped to the steps the crop-to-even at the end keeps (:func:`input_steps_used`),
    so that every op computes only steps that reach the output; None leaves the crop in the last
    block. The mean over time is written so that the ONNX export makes it a GlobalAveragePool
    (:func:`prunequant.quantize.export.export_onnx`). Submodule names are the model's (``blocks``,
    ``head``), so exported weights keep their parameter names.
    """

    def __init__(self, blocks: nn.Sequential, head: nn.Linear, input_windows: tuple | None):
        super().__init__()
        self.blocks = blocks
        self.head = head
        self.input_windows = input_windows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_windows is not None:
            x = crop_to_steps_used(x, self.input_windows)
        return self.head(self.blocks(x).mean(dim=-1))


def deployment_model(model: nn.Module) -> DeploymentForm:
    """The same function, cheaper to run: BatchNorm folded, the last pooling a crop, moved up.

    The last block's AvgPool1d(2) is followed only by the global mean over time, and the mean of
    pairwise means is the mean over the first 2*floor(L/2) steps. Pooling costs as much as the
    convolutions here (more in int8, whose QLinearAveragePool is slow), so it becomes a crop. In a
    separable stack no op before it is padded, so the crop moves to the model input: the convs
    skip the steps it would drop, and the mean reads a whole tensor, which ONNX Runtime runs as an
    int8 GlobalAveragePool straight from the last conv's channels-last output. In a residual stack
    the crop stays behind the last block: its padding and skip connection read steps the crop
    would drop. Returns an eval-mode copy; ``model`` is untouched.
    """
    folded = fold_batchnorm(model)
    blocks = list(folded.blocks)
    separable = bool(blocks) and all(isinstance(block, SeparableBlock) for block in blocks)
    if separable:
        blocks[-1].pool = nn.Identity()
        windows = tuple((block.depthwise.kernel_size[0], block.depthwise.stride[0]) for block in blocks)
    else:
        blocks[-1].pool = CropToEven()
        windows = None
    return DeploymentForm(folded.blocks, folded.head, windows).eval()
