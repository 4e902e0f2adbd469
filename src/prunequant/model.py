"""The depthwise-separable 1D CNN and the spec that describes its shape.

A model is fully described by a :class:`ModelSpec`; pruning changes only the
block widths, so a pruned model is rebuilt from its spec plus its weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["BlockSpec", "ModelSpec", "SeparableBlock", "SeparableCNN", "build_model", "spec_of"]


@dataclass(frozen=True)
class BlockSpec:
    kernel_size: int  # depthwise kernel length, in time steps
    stride: int  # depthwise stride
    width: int  # pointwise output channels


@dataclass(frozen=True)
class ModelSpec:
    in_channels: int
    n_classes: int
    blocks: tuple[BlockSpec, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        blocks = tuple(BlockSpec(**block) for block in data["blocks"])
        return cls(in_channels=int(data["in_channels"]), n_classes=int(data["n_classes"]), blocks=blocks)

    def output_length(self, length: int) -> int:
        """Time steps left after the last block for an input of ``length`` steps."""
        for block in self.blocks:
            length = (length - block.kernel_size) // block.stride + 1
            length //= 2
        return length

    def check_input_length(self, length: int) -> None:
        if self.output_length(length) < 1:
            raise ValueError(
                f"an input of {length} time steps is too short for blocks {list(self.blocks)}: "
                "use longer series, a smaller kernel_size or stride, or fewer blocks"
            )


class SeparableBlock(nn.Module):
    """Depthwise conv → pointwise conv → ReLU → BatchNorm1d → AvgPool1d(2)."""

    def __init__(self, in_channels: int, spec: BlockSpec):
        super().__init__()
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, spec.kernel_size, stride=spec.stride, groups=in_channels
        )
        self.pointwise = nn.Conv1d(in_channels, spec.width, 1)
        self.relu = nn.ReLU()
        self.norm = nn.BatchNorm1d(spec.width)
        self.pool = nn.AvgPool1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.norm(self.relu(self.pointwise(self.depthwise(x)))))


class SeparableCNN(nn.Module):
    """Stack of separable blocks, global average pool over time, linear head."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        blocks = []
        channels = spec.in_channels
        for block_spec in spec.blocks:
            blocks.append(SeparableBlock(channels, block_spec))
            channels = block_spec.width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=-1))


def build_model(spec: ModelSpec) -> SeparableCNN:
    return SeparableCNN(spec)


def spec_of(model: SeparableCNN) -> ModelSpec:
    """Read the spec back from a (possibly pruned) model's layer shapes."""
    blocks = tuple(
        BlockSpec(
            kernel_size=block.depthwise.kernel_size[0],
            stride=block.depthwise.stride[0],
            width=block.pointwise.out_channels,
        )
        for block in model.blocks
    )
    first = model.blocks[0].depthwise
    return ModelSpec(in_channels=first.in_channels, n_classes=model.head.out_features, blocks=blocks)
