"""The 4-D form a model is converted in: Conv1d as Conv2d over [N, C, 1, T], the global mean kept 4-D.

litert-torch moves 4-D tensors to channels-last and cancels the layout transposes between such
ops; a 3-D mean or reshape makes it transpose the largest activation back first, which about
doubled the arena of the default model. The form computes exactly the model's function.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from prunequant.errors import UserError
from prunequant.model import ARCHITECTURES, ResidualBlock
from prunequant.quantize.fold import fold_batchnorm

__all__ = ["conversion_form"]


def _as_conv2d(conv: nn.Conv1d) -> nn.Conv2d:
    """The same conv over [N, C, 1, T]: kernel (1, k), stride (1, s), the same weights."""
    if conv.padding not in ((0,), 0) or conv.dilation != (1,):
        raise ValueError("only unpadded, undilated Conv1d layers have a 4-D form here")
    conv2d = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        (1, conv.kernel_size[0]),
        stride=(1, conv.stride[0]),
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        conv2d.weight.copy_(conv.weight[:, :, None, :])
        if conv.bias is not None:
            conv2d.bias.copy_(conv.bias)
    return conv2d


class _Block2d(nn.Module):
    """One block with BatchNorm folded, over [N, C, 1, T].

    The last block's pool becomes a crop to an even number of steps (what the pool would read),
    as in the deployment form; the crop is made on the block's input, where the deployment form
    crops too: the same values, and no copy of the block's largest tensor, which TFLM would hold
    twice.
    """

    def __init__(self, block: nn.Module, last: bool):
        super().__init__()
        if not isinstance(block.norm, nn.Identity):
            raise ValueError("convert the folded form: BatchNorm must be folded first")
        self.depthwise = _as_conv2d(block.depthwise)
        self.pointwise = _as_conv2d(block.pointwise)
        self.kernel_size, self.stride = block.depthwise.kernel_size[0], block.depthwise.stride[0]
        self.residual = isinstance(block, ResidualBlock)
        self.pool = not last  # the last block's AvgPool1d(2) is a crop: only the global mean follows
        self.padding = tuple(block.pad.padding) if self.residual else (0, 0)
        if self.residual:
            self.skip = nn.Identity() if isinstance(block.skip, nn.Identity) else _as_conv2d(block.skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, self.padding) if self.residual else x
        main_input, skip_input = padded, x
        steps = (padded.shape[-1] - self.kernel_size) // self.stride + 1
        if not self.pool and steps % 2:
            kept = steps - 1
            main_input = padded[..., : (kept - 1) * self.stride + self.kernel_size]
            skip_input = x[..., : (kept - 1) * self.stride + 1]  # the skip is a 1x1 conv or the identity
        main = self.pointwise(self.depthwise(main_input))
        y = F.relu(main + self.skip(skip_input)) if self.residual else F.relu(main)
        return F.avg_pool2d(y, (1, 2)) if self.pool else y


class _Model2d(nn.Module):
    """[N, C, T] in, logits out; blocks over [N, C, 1, T]; a 4-D global mean, then the head."""

    def __init__(self, folded: nn.Module):
        super().__init__()
        last = len(folded.blocks) - 1
        self.blocks = nn.Sequential(*(_Block2d(block, i == last) for i, block in enumerate(folded.blocks)))
        self.head = copy.deepcopy(folded.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(x.unsqueeze(2))
        return self.head(y.mean(dim=(2, 3), keepdim=True).flatten(1))


def conversion_form(model: nn.Module) -> nn.Module:
    """A project model's deployment form (BatchNorm folded, the last pool a crop) in 4-D ops.

    Computes the same function as ``deployment_model(model)`` (the same float operations); see the
    module docstring for why the converter wants it 4-D.
    """
    if type(model) not in ARCHITECTURES.values():
        raise UserError(
            f"cannot convert a {type(model).__name__} to TFLite: only the architectures "
            f"{sorted(ARCHITECTURES)} have a conversion form (other modules: deployment_form=False)"
        )
    return _Model2d(fold_batchnorm(model.eval())).eval()
