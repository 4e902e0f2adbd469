"""Structured pruning: remove whole output channels of every block's pointwise conv, physically.

Channels go through torch-pruning's dependency graph, which also shrinks everything that
consumes them: the BatchNorm, the next block's depthwise conv (and its groups), the next
pointwise conv's inputs, a 1x1 skip conv and the linear head. In the residual CNN an identity
skip ties a block's output channels to its input channels, so blocks joined by identity skips
form one *channel group*: the graph removes the same channels from all of them. A group is
scored as the sum of its blocks' scores, pruned at the smallest rate any of its blocks asks
for, and stays whole if any of its blocks is listed as not prunable.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from prunequant.model import spec_of
from prunequant.names import SettingError
from prunequant.prune.checks import check_choice, check_fraction, check_not_prunable
from prunequant.prune.criteria import CRITERIA, Scores, channel_scores

__all__ = [
    "SCOPES",
    "channels_to_remove",
    "n_channels_to_remove",
    "block_widths",
    "prune_structured",
    "prune_channels",
]

SCOPES = ("layer", "global")


def n_channels_to_remove(width: int, rate: float, min_channels: int = 1) -> tuple[int, bool]:
    """Channels a ``width``-channel block loses at ``rate`` (rounded half up), and whether the floor cut it.

    At most ``width - min_channels`` are removed, so a block never loses all its channels.
    """
    wanted = math.floor(rate * width + 0.5)
    allowed = max(width - min_channels, 0)
    return min(wanted, allowed), wanted > allowed


def channels_to_remove(scores: torch.Tensor, rate: float, min_channels: int = 1) -> list[int]:
    """Indices of the round(rate * n) lowest-scoring channels (ties: lower index first)."""
    check_fraction("prune rate", rate)
    n_remove, _ = n_channels_to_remove(len(scores), rate, min_channels)
    return sorted(_ascending(scores)[:n_remove])


def _ascending(scores: torch.Tensor) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (scores[i].item(), i))


def block_widths(model: nn.Module) -> dict[str, int]:
    """Block name → pointwise output channels."""
    return {f"blocks.{index}": block.pointwise.out_channels for index, block in enumerate(model.blocks)}


def _example_input(model: nn.Module) -> torch.Tensor:
    spec = spec_of(model)
    length = 1
    while spec.output_length(length) < 1:
        length += 1
    return torch.zeros(1, spec.in_channels, length)


def _channel_groups(graph: tp.DependencyGraph, model: nn.Module) -> list[list[str]]:
    """Blocks whose pointwise output channels the graph ties together, in block order."""
    by_conv = {block.pointwise: f"blocks.{index}" for index, block in enumerate(model.blocks)}
    groups: list[list[str]] = []
    seen: set[str] = set()
    for conv, name in by_conv.items():
        if name in seen:
            continue
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0])
        members = {
            by_conv[dep.target.module]
            for dep, _ in group
            if dep.target.module in by_conv and dep.handler == tp.prune_conv_out_channels
        }
        members.add(name)
        ordered = sorted(members, key=lambda n: int(n.split(".")[1]))
        seen.update(ordered)
        groups.append(ordered)
    return groups


def _layer_plan(groups, group_scores, group_rates, min_channels):
    plan = {}
    for key in groups:
        rate = group_rates[key]
        n_remove, floored = n_channels_to_remove(len(group_scores[key]), rate, min_channels)
        plan[key] = (sorted(_ascending(group_scores[key])[:n_remove]), floored)
    return plan


def _global_plan(groups, group_scores, rate, min_channels):
    """Rank every channel of every group together after dividing each group's scores by their max.

    Dividing by the max puts every group's best channel at 1 whatever the criterion's units
    and the layer's size, so no layer is emptied only because its scores are small.
    """
    candidates = []
    for order, key in enumerate(groups):
        scores = group_scores[key]
        top = scores.max().item()
        normalised = scores / top if top > 0 else scores
        candidates += [(normalised[i].item(), order, i, key) for i in range(len(scores))]
    total = sum(len(group_scores[key]) for key in groups)
    wanted = math.floor(rate * total + 0.5)
    removed = {key: [] for key in groups}
    floored = dict.fromkeys(groups, False)
    taken = 0
    for _, _, index, key in sorted(candidates):
        if taken == wanted:
            break
        if len(group_scores[key]) - len(removed[key]) > min_channels:
            removed[key].append(index)
            taken += 1
        else:
            floored[key] = True
    return {key: (sorted(removed[key]), floored[key]) for key in groups}


def _check_rates(rate, names: list[str], scope: str) -> dict[str, float]:
    """Per-block target rates; a scalar applies to every block."""
    if isinstance(rate, Mapping):
        if scope != "layer":
            raise SettingError("rate: per-block rates (a mapping) need scope 'layer'")
        unknown = [name for name in rate if name not in names]
        if unknown:
            raise SettingError(f"rate: {unknown} match no block; blocks are {names[0]} … {names[-1]}")
        for name, value in rate.items():
            check_fraction(f"rate[{name!r}]", float(value), allow_zero=True)
        return {name: float(rate.get(name, 0.0)) for name in names}
    check_fraction("prune rate", float(rate))
    return dict.fromkeys(names, float(rate))


def _check_settings(model, *, rate, scope, not_prunable, min_channels) -> dict[str, float]:
    """Raise SettingError (a ValueError) for a bad setting; return the per-block target rates."""
    check_choice("pruning scope", scope, SCOPES)
    if min_channels < 1:
        raise SettingError(f"min_channels must be at least 1, got {min_channels}")
    names = list(block_widths(model))
    check_not_prunable(not_prunable, len(names))
    return _check_rates(rate, names, scope)


def _prune_with_scores(
    model: nn.Module,
    scores: Scores,
    *,
    rate: float | Mapping[str, float],
    scope: str,
    not_prunable: Sequence[str],
    min_channels: int,
) -> tuple[nn.Module, dict]:
    """Physically prune a copy of ``model`` given precomputed channel scores."""
    rates = _check_settings(
        model, rate=rate, scope=scope, not_prunable=not_prunable, min_channels=min_channels
    )
    names = list(rates)

    pruned = copy.deepcopy(model).cpu().eval()
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=_example_input(pruned))
    groups = {tuple(members): members for members in _channel_groups(graph, pruned)}
    prunable = {key: members for key, members in groups.items() if not set(members) & set(not_prunable)}
    group_scores = {
        key: sum(scores[name].cpu().double() for name in members) for key, members in prunable.items()
    }
    if scope == "layer":
        group_rates = {key: min(rates[name] for name in members) for key, members in prunable.items()}
        plan = _layer_plan(prunable, group_scores, group_rates, min_channels)
    else:
        plan = _global_plan(prunable, group_scores, float(rate), min_channels)

    before = block_widths(pruned)
    blocks_by_name = dict(zip(names, pruned.blocks, strict=True))
    for key, (removed, _) in plan.items():
        if not removed:
            continue
        group = graph.get_pruning_group(
            blocks_by_name[key[0]].pointwise, tp.prune_conv_out_channels, idxs=removed
        )
        if not graph.check_pruning_group(group):
            raise RuntimeError(f"{', '.join(key)}: removing channels {removed} would break the model")
        group.prune()
    pruned.eval()  # torch-pruning hands back new layers in train mode
    after = block_widths(pruned)

    records = []
    for key, members in groups.items():
        removed, floored = plan.get(key, ([], False))
        for name in members:
            records.append(
                {
                    "block": name,
                    "prunable": key in prunable,
                    "coupled_with": [other for other in members if other != name],
                    "rate": rates[name] if scope == "layer" else float(rate),
                    "channels_before": before[name],
                    "channels_after": after[name],
                    "removed": removed,
                    "floor_applied": floored,
                }
            )
    records.sort(key=lambda row: int(row["block"].split(".")[1]))
    record = {
        "rate": dict(rate) if isinstance(rate, Mapping) else float(rate),
        "scope": scope,
        "min_channels": min_channels,
        "not_prunable": list(not_prunable),
        "blocks": records,
        "parameters_before": sum(p.numel() for p in model.parameters()),
        "parameters_after": sum(p.numel() for p in pruned.parameters()),
        "spec": spec_of(pruned).to_dict(),
    }
    return pruned, record


def prune_structured(
    model: nn.Module,
    *,
    rate: float | Mapping[str, float],
    criterion: str,
    scope: str = "layer",
    seed: int = 0,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
    not_prunable: Sequence[str] = (),
    min_channels: int = 1,
) -> tuple[nn.Module, dict]:
    """Return a physically pruned copy of ``model`` (on the CPU, in eval mode) and a JSON-able record.

    ``rate`` is the share of each block's channels to remove (scope ``layer``), or of all
    prunable channels together (scope ``global``, ranked after per-layer max-normalisation);
    a mapping ``{'blocks.<i>': rate}`` gives per-block rates (scope ``layer``; blocks not named
    keep every channel). Every block keeps at least ``min_channels``; where that floor cut the
    removal, the block's record says ``floor_applied: true``. Scores come from the unpruned
    model (one shot); ``data``, ``seed`` feed the criterion (see :mod:`.criteria`).
    """
    check_choice("pruning criterion", criterion, CRITERIA)
    _check_settings(model, rate=rate, scope=scope, not_prunable=not_prunable, min_channels=min_channels)
    scores = channel_scores(model, criterion, data=data, seed=seed)
    pruned, record = _prune_with_scores(
        model, scores, rate=rate, scope=scope, not_prunable=not_prunable, min_channels=min_channels
    )
    return pruned, {"criterion": criterion, "seed": seed, **record}


def prune_channels(model: nn.Module, rate: float, criterion: str = "l1") -> tuple[nn.Module, dict]:
    """One-shot, layer-scope pruning of every block at ``rate`` (the original workflow's call)."""
    return prune_structured(model, rate=rate, criterion=criterion)
