"""Structured channel pruning of each block's pointwise convolution.

Channels are removed physically through torch-pruning's dependency graph, which
also shrinks the BatchNorm, the next block's depthwise conv (and its groups),
the next pointwise conv's inputs and the linear head.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from prunequant.model import SeparableCNN, spec_of

__all__ = ["CRITERIA", "l1_channel_scores", "channels_to_remove", "prune_channels"]


def l1_channel_scores(conv: nn.Conv1d) -> torch.Tensor:
    """L1 norm of each output channel's filter."""
    return conv.weight.detach().abs().sum(dim=(1, 2))


# Importance criteria, by the name the config uses.
CRITERIA: dict[str, Callable[[nn.Conv1d], torch.Tensor]] = {"l1": l1_channel_scores}


def channels_to_remove(scores: torch.Tensor, rate: float) -> list[int]:
    """Indices of the round(rate * n) lowest-scoring channels (ties: lower index first)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"prune rate must be in (0, 1), got {rate}")
    n_channels = len(scores)
    n_remove = min(math.floor(rate * n_channels + 0.5), n_channels - 1)
    order = sorted(range(n_channels), key=lambda i: (scores[i].item(), i))
    return sorted(order[:n_remove])


def prune_channels(model: SeparableCNN, rate: float, criterion: str = "l1") -> tuple[SeparableCNN, dict]:
    """Return a pruned copy of ``model`` and a record of what was removed.

    Every block's channels are scored on the unpruned model (one-shot,
    layer-wise ranking), then removed block by block.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; known: {sorted(CRITERIA)}")
    pruned = copy.deepcopy(model).cpu().eval()
    spec = spec_of(pruned)
    example = torch.zeros(1, spec.in_channels, _shortest_valid_length(pruned))
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example)
    plan = [
        (block, channels_to_remove(CRITERIA[criterion](block.pointwise), rate)) for block in pruned.blocks
    ]
    blocks = []
    for index, (block, removed) in enumerate(plan):
        before = block.pointwise.out_channels
        group = graph.get_pruning_group(block.pointwise, tp.prune_conv_out_channels, idxs=removed)
        if removed and not graph.check_pruning_group(group):
            raise RuntimeError(f"block {index}: removing channels {removed} would break the model")
        if removed:
            group.prune()
        blocks.append(
            {
                "block": index,
                "channels_before": before,
                "channels_after": block.pointwise.out_channels,
                "removed": removed,
            }
        )
    pruned.eval()  # torch-pruning hands back new layers in train mode
    record = {
        "rate": rate,
        "criterion": criterion,
        "blocks": blocks,
        "parameters_before": sum(p.numel() for p in model.parameters()),
        "parameters_after": sum(p.numel() for p in pruned.parameters()),
        "spec": spec_of(pruned).to_dict(),
    }
    return pruned, record


def _shortest_valid_length(model: SeparableCNN) -> int:
    spec = spec_of(model)
    length = 1
    while spec.output_length(length) < 1:
        length += 1
    return length
