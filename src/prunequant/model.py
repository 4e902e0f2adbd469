"""The 1D CNN architectures and the spec that describes their shape.

Two architectures share one spec (:class:`ModelSpec`, chosen by ``arch``):

- ``separable``: each block is depthwise conv → pointwise conv → ReLU → BatchNorm1d → AvgPool1d(2).
- ``residual``: each block is zero padding → depthwise conv → pointwise conv → BatchNorm1d, plus a
  skip connection, added before the ReLU (as in ResNet, so BatchNorm sits directly after the
  pointwise conv and folds exactly into it) → ReLU → AvgPool1d(2).

Both end with a global average over time and a linear head. Blocks are named ``blocks.<i>`` and
every block has a ``.pointwise`` conv, the layer whose output channels pruning removes. A model
is fully described by its spec; pruning changes only the block widths, so a pruned model is
rebuilt from its spec plus its weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prunequant.names import SettingError

__all__ = [
    "ARCHITECTURES",
    "SKIP_KINDS",
    "BlockSpec",
    "ModelSpec",
    "SeparableBlock",
    "SeparableCNN",
    "ResidualBlock",
    "ResidualCNN",
    "CropToEven",
    "training_form",
    "build_model",
    "spec_of",
    "prunable_block_names",
]

# Skip connection of a residual block: None = chosen by shape (identity when the block keeps its
# channel count and stride 1, else a strided 1x1 conv); "identity" or "conv" pins the choice.
SKIP_KINDS = (None, "identity", "conv")


@dataclass(frozen=True)
class BlockSpec:
    kernel_size: int  # depthwise kernel length, in time steps
    stride: int  # depthwise stride
    width: int  # pointwise output channels
    skip: str | None = None  # residual arch only: None (by shape) | "identity" | "conv"


@dataclass(frozen=True)
class ModelSpec:
    in_channels: int
    n_classes: int
    blocks: tuple[BlockSpec, ...]
    arch: str = "separable"  # a key of ARCHITECTURES

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise SettingError(f"model arch {self.arch!r} is not known; use one of {sorted(ARCHITECTURES)}")
        for index, block in enumerate(self.blocks):
            if block.skip not in SKIP_KINDS:
                raise SettingError(f"blocks.{index}: skip {block.skip!r} is not one of {SKIP_KINDS}")
            if block.skip is not None and self.arch != "residual":
                raise SettingError(f"blocks.{index}: skip={block.skip!r} needs arch 'residual'")

    def to_dict(self) -> dict:
        """Plain JSON types (blocks as a list), so a record equals its JSON round trip."""
        data = asdict(self)
        data["blocks"] = list(data["blocks"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Inverse of :meth:`to_dict`; dicts written before ``arch`` existed load as separable."""
        blocks = tuple(BlockSpec(**block) for block in data["blocks"])
        return cls(
            in_channels=int(data["in_channels"]),
            n_classes=int(data["n_classes"]),
            blocks=blocks,
            arch=data.get("arch", "separable"),
        )

    def block_input_channels(self) -> list[int]:
        """Channels entering each block."""
        return [self.in_channels] + [block.width for block in self.blocks[:-1]]

    def output_length(self, length: int) -> int:
        """Time steps left after the last block for an input of ``length`` steps."""
        for block in self.blocks:
            padding = sum(_same_padding(block.kernel_size)) if self.arch == "residual" else 0
            length = (length + padding - block.kernel_size) // block.stride + 1
            if length < 1:
                return length
            length //= 2  # AvgPool1d(2)
        return length

    def check_input_length(self, length: int) -> None:
        if self.output_length(length) < 1:
            raise SettingError(
                f"an input of {length} time steps is too short for {self.arch} blocks {list(self.blocks)}: "
                "use longer series, a smaller kernel_size or stride, or fewer blocks"
            )


def _same_padding(kernel_size: int) -> tuple[int, int]:
    """Zero padding (left, right) that makes a residual block's depthwise conv give ceil(L / stride)
    steps, exactly what the strided 1x1 skip gives, for odd and even kernels alike."""
    return (kernel_size - 1) // 2, kernel_size // 2


class CropToEven(nn.Module):
    """Drops the last time step of an odd-length series: what AvgPool1d(2) ignores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] // 2 * 2]


class _DepthwiseConv1dFunction(torch.autograd.Function):
    """A depthwise conv (groups == channels, no padding, no dilation) whose weight gradient is one bmm.

    On the CPU, oneDNN computes a depthwise conv's weight gradient at well under 1 GFLOP/s: on the
    seed model's first block (32 x 20 x 101, k=25, s=2) 0.84 ms, against 0.22 ms for the same sums as
    one batched matrix product over the input's sliding windows (bench/results/trainer-cpu.txt).
    The forward and the input gradient stay torch's own.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride):
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return nn.functional.conv1d(x, weight, bias, stride=stride, groups=weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        channels, _, kernel_size = weight.shape
        needs_x, needs_weight, needs_bias, _ = ctx.needs_input_grad
        grad_x = grad_weight = grad_bias = None
        if needs_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [ctx.stride], [0], [1], False, [0], channels, [True, False, False]
            )[0]
        if needs_weight:
            batch, _, out_length = grad_out.shape
            # windows[c, n * out_length + t, k] = x[n, c, t * stride + k]
            windows = x.unfold(2, kernel_size, ctx.stride).transpose(0, 1).reshape(channels, -1, kernel_size)
            grad_rows = grad_out.transpose(0, 1).reshape(channels, 1, batch * out_length)
            grad_weight = torch.bmm(grad_rows, windows)
        if needs_bias:
            grad_bias = grad_out.sum(dim=(0, 2))
        return grad_x, grad_weight, grad_bias, None


class _DepthwiseConv1dForTraining(nn.Conv1d):
    """nn.Conv1d whose CPU weight gradient comes from :class:`_DepthwiseConv1dFunction`.

    ``training_form`` sets it as the class of a depthwise conv for the epoch, the way torch's own
    parametrizations swap a module's class: parameters, state_dict keys and hooks stay the conv's.
    """

    def _conv_forward(self, input, weight, bias):
        if input.device.type != "cpu":
            return super()._conv_forward(input, weight, bias)
        return _DepthwiseConv1dFunction.apply(input, weight, bias, self.stride[0])


def _is_plain_depthwise(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv1d
        and conv.groups == conv.in_channels == conv.out_channels
        and conv.padding == (0,)
        and conv.dilation == (1,)
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


class ResidualBlock(nn.Module):
    """Pad → depthwise conv → pointwise conv → BatchNorm1d, + skip, → ReLU → AvgPool1d(2).

    The skip is the identity when shapes allow (same channels, stride 1), else a 1x1 conv with
    the block's stride. It is added before the ReLU, so BatchNorm directly follows the pointwise
    conv and folds into it exactly.
    """

    def __init__(self, in_channels: int, spec: BlockSpec):
        super().__init__()
        skip = spec.skip or ("identity" if in_channels == spec.width and spec.stride == 1 else "conv")
        if skip == "identity" and (in_channels != spec.width or spec.stride != 1):
            raise SettingError(
                f"an identity skip needs stride 1 and width == input channels, got stride {spec.stride}, "
                f"{in_channels} -> {spec.width} channels"
            )
        # A separate pad rather than the conv's own padding: Conv1d pads symmetrically, which
        # cannot match the skip's length for even kernels (ONNX Runtime fuses Pad into Conv).
        self.pad = nn.ConstantPad1d(_same_padding(spec.kernel_size), 0.0)
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, spec.kernel_size, stride=spec.stride, groups=in_channels
        )
        self.pointwise = nn.Conv1d(in_channels, spec.width, 1)
        self.norm = nn.BatchNorm1d(spec.width)
        self.skip = (
            nn.Identity() if skip == "identity" else nn.Conv1d(in_channels, spec.width, 1, stride=spec.stride)
        )
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.norm(self.pointwise(self.depthwise(self.pad(x))))
        return self.pool(self.relu(main + self.skip(x)))


class _BlockStack(nn.Module):
    """Blocks in sequence, global average pool over time, linear head."""

    block_class: type[nn.Module]

    def __init__(self, spec: ModelSpec):
        super().__init__()
        channels = spec.block_input_channels()
        self.blocks = nn.Sequential(
            *(self.block_class(c, block) for c, block in zip(channels, spec.blocks, strict=True))
        )
        self.head = nn.Linear(spec.blocks[-1].width if spec.blocks else spec.in_channels, spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=-1))


class SeparableCNN(_BlockStack):
    """Stack of separable blocks, global average pool over time, linear head."""

    block_class = SeparableBlock


class ResidualCNN(_BlockStack):
    """Stack of residual separable blocks, global average pool over time, linear head."""

    block_class = ResidualBlock


# Architecture name (ModelSpec.arch, config key model.arch) → model class.
ARCHITECTURES: dict[str, type[_BlockStack]] = {"separable": SeparableCNN, "residual": ResidualCNN}


def build_model(spec: ModelSpec) -> nn.Module:
    return ARCHITECTURES[spec.arch](spec)


def _arch_of(model: nn.Module) -> str:
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise TypeError(f"{type(model).__name__} is not one of the architectures {sorted(ARCHITECTURES)}")


def _skip_of(block: nn.Module, in_channels: int) -> str | None:
    """The block's skip kind, pinned only where the shape rule would choose the other kind."""
    if not isinstance(block, ResidualBlock):
        return None
    actual = "identity" if isinstance(block.skip, nn.Identity) else "conv"
    by_shape = (
        "identity"
        if in_channels == block.pointwise.out_channels and block.depthwise.stride[0] == 1
        else "conv"
    )
    return None if actual == by_shape else actual


def spec_of(model: nn.Module) -> ModelSpec:
    """Read the spec back from a (possibly pruned) model's layer shapes."""
    blocks = tuple(
        BlockSpec(
            kernel_size=block.depthwise.kernel_size[0],
            stride=block.depthwise.stride[0],
            width=block.pointwise.out_channels,
            skip=_skip_of(block, block.depthwise.in_channels),
        )
        for block in model.blocks
    )
    first = model.blocks[0].depthwise
    return ModelSpec(
        in_channels=first.in_channels,
        n_classes=model.head.out_features,
        blocks=blocks,
        arch=_arch_of(model),
    )


def prunable_block_names(spec: ModelSpec) -> list[str]:
    """Names of the blocks whose pointwise channels can be pruned (every block)."""
    return [f"blocks.{index}" for index in range(len(spec.blocks))]


@contextmanager
def training_form(model: nn.Module) -> Iterator[nn.Module]:
    """The model in a form that trains faster on the CPU: the same function, fewer or cheaper ops.

    - The last block's AvgPool1d(2) becomes a crop. It is followed only by the global mean over
      time, and the mean of pairwise means is the mean over the first 2*floor(L/2) steps; the
      pool's forward and backward were a fifth of a CPU training step.
    - Depthwise convs compute their weight gradient as one batched matrix product
      (:class:`_DepthwiseConv1dFunction`), about 4x cheaper than oneDNN's on the CPU.

    Outputs and gradients are the model's own up to float rounding (bench/results/trainer-cpu.txt).
    Everything is put back on exit, so a saved model is the architecture as built. Models of other
    classes (e.g. traced QAT graphs) are untouched.
    """
    if not isinstance(model, _BlockStack) or not len(model.blocks):
        yield model
        return
    depthwise_convs = [block.depthwise for block in model.blocks if _is_plain_depthwise(block.depthwise)]
    last = model.blocks[-1]
    pool = getattr(last, "pool", None)
    pairwise = isinstance(pool, nn.AvgPool1d) and pool.kernel_size == pool.stride == (2,)
    crop = pairwise and pool.padding == (0,) and not pool.ceil_mode
    for conv in depthwise_convs:
        conv.__class__ = _DepthwiseConv1dForTraining
    if crop:
        last.pool = CropToEven()
    try:
        yield model
    finally:
        for conv in depthwise_convs:
            conv.__class__ = nn.Conv1d
        if crop:
            last.pool = pool
