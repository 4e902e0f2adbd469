import subprocess
import sys

import pytest
import torch

from prunequant.errors import UserError
from prunequant.model import BlockSpec, ModelSpec, build_model, spec_of
from prunequant.names import not_prunable_problems
from prunequant.prune import (
    CRITERIA,
    channel_scores,
    channels_to_remove,
    prune_channels,
    prune_structured,
)


def randomize_batchnorm(model, seed=0):
    """BatchNorm statistics far from identity, as after training."""
    generator = torch.Generator().manual_seed(seed)
    for block in model.blocks:
        n = block.norm.num_features
        block.norm.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
        block.norm.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
        block.norm.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        block.norm.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def residual_model():
    # blocks.0 has a 1x1 skip (4 -> 16, stride 2); blocks.1 an identity skip (16 -> 16, even
    # kernel, padded unevenly), which ties its channels to blocks.0; blocks.2 a 1x1 skip.
    spec = ModelSpec(4, 3, (BlockSpec(5, 2, 16), BlockSpec(4, 1, 16), BlockSpec(3, 1, 12)), arch="residual")
    torch.manual_seed(0)
    return randomize_batchnorm(build_model(spec))


@pytest.mark.parametrize("rate,expected", [(0.05, 133), (0.10, 126), (0.15, 119)])
def test_reference_rates_give_the_reference_widths(rate, expected):
    model = build_model(ModelSpec(20, 10, (BlockSpec(25, 2, 140),)))
    pruned, record = prune_channels(model, rate)
    assert spec_of(pruned).blocks[0].width == expected
    assert record["parameters_after"] == sum(p.numel() for p in pruned.parameters())
    assert record["parameters_after"] == {133: 4919, 126: 4688, 119: 4457}[expected]


def test_lowest_scores_are_removed():
    scores = torch.tensor([5.0, 1.0, 3.0, 0.5, 4.0])
    assert channels_to_remove(scores, 0.4) == [1, 3]
    with pytest.raises(ValueError):
        channels_to_remove(scores, 1.0)


def hand_made_model():
    """One block, three pointwise channels whose L1 and L2 orders differ."""
    model = build_model(ModelSpec(3, 2, (BlockSpec(3, 1, 3),))).eval()
    with torch.no_grad():
        model.blocks[0].pointwise.weight.copy_(
            torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.0]]).unsqueeze(-1)
        )
        model.blocks[0].norm.weight.copy_(torch.tensor([0.3, -2.0, 1.0]))
    return model


def test_weight_norm_criteria_rank_as_defined():
    model = hand_made_model()
    l1 = channel_scores(model, "l1")["blocks.0"]
    l2 = channel_scores(model, "l2")["blocks.0"]
    torch.testing.assert_close(l1, torch.tensor([2.0, 3.0, 1.0]))
    torch.testing.assert_close(l2, torch.tensor([2.0, 3**0.5, 0.5**0.5]))
    # Two of three channels removed: L1 keeps the [1,1,1] filter, L2 keeps the [2,0,0] one.
    assert prune_structured(model, rate=0.67, criterion="l1")[1]["blocks"][0]["removed"] == [0, 2]
    assert prune_structured(model, rate=0.67, criterion="l2")[1]["blocks"][0]["removed"] == [1, 2]


def test_bn_scale_ranks_by_absolute_gamma():
    scores = channel_scores(hand_made_model(), "bn_scale")["blocks.0"]
    torch.testing.assert_close(scores, torch.tensor([0.3, 2.0, 1.0]))
    assert channels_to_remove(scores, 0.34) == [0]


def test_random_criterion_is_seeded(randomized_bn_model):
    first = channel_scores(randomized_bn_model, "random", seed=3)
    again = channel_scores(randomized_bn_model, "random", seed=3)
    other = channel_scores(randomized_bn_model, "random", seed=4)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["blocks.0"], other["blocks.0"])
    assert [len(s) for s in first.values()] == [16, 12]


def test_taylor_matches_a_hand_computed_gradient():
    """Score = Σ_n |Σ_t a·∂L/∂a| on the BatchNorm output a, with ∂L/∂a written out by hand."""
    torch.manual_seed(1)
    model = randomize_batchnorm(build_model(ModelSpec(2, 3, (BlockSpec(3, 1, 4),))))
    x, y = torch.randn(5, 2, 10), torch.tensor([0, 1, 2, 0, 1])
    captured = {}
    handle = model.blocks[0].norm.register_forward_hook(lambda m, i, out: captured.update(a=out.detach()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    activation = captured["a"]  # [N, C, 8]
    # loss = mean_n CE → ∂L/∂logits = (softmax − onehot)/N; logits = W·mean_t'(pool(a)) + b, and the
    # mean over AvgPool1d(2) outputs is a mean over the first 2·⌊L/2⌋ steps of a.
    n, length = len(x), activation.shape[-1]
    used = 2 * (length // 2)
    d_logits = (logits.softmax(dim=1) - torch.nn.functional.one_hot(y, 3)) / n
    d_features = d_logits @ model.head.weight  # [N, C]
    gradient = torch.zeros_like(activation)
    gradient[..., :used] = d_features[..., None] / used
    expected = (activation * gradient).sum(dim=-1).abs().sum(dim=0)
    actual = channel_scores(model, "taylor", data=(x, y), batch_size=n)["blocks.0"]
    torch.testing.assert_close(actual, expected)
    # Batches add up: two batches score the sum of their separate scores.
    first = channel_scores(model, "taylor", data=(x[:3], y[:3]), batch_size=3)["blocks.0"]
    second = channel_scores(model, "taylor", data=(x[3:], y[3:]), batch_size=3)["blocks.0"]
    split = channel_scores(model, "taylor", data=(x, y), batch_size=3)["blocks.0"]
    torch.testing.assert_close(split, first + second)
    assert all(p.grad is None for p in model.parameters())


def test_taylor_needs_data(randomized_bn_model):
    with pytest.raises(ValueError, match="taylor.*data"):
        channel_scores(randomized_bn_model, "taylor")


def masked_forward(original, record, x):
    """The unpruned model with the removed channels zeroed where they are consumed.

    A removed channel disappears from the block's output (feeding the head, a skip or the
    next block) and from the next block's depthwise output (whose bias would survive a zero input).
    """
    removed = [block["removed"] for block in record["blocks"]]

    def mask(channels):
        def hook(module, inputs, output):
            output = output.clone()
            output[:, channels] = 0
            return output

        return hook

    blocks = original.blocks
    handles = [block.register_forward_hook(mask(r)) for block, r in zip(blocks, removed, strict=True)]
    handles += [
        block.depthwise.register_forward_hook(mask(r))
        for block, r in zip(original.blocks[1:], removed[:-1], strict=True)
    ]
    with torch.no_grad():
        expected = original(x)
    for handle in handles:
        handle.remove()
    return expected


@pytest.mark.parametrize("arch", ["separable", "residual"])
@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_pruned_model_matches_the_original_with_those_channels_masked(arch, criterion, randomized_bn_model):
    """Removing a channel must equal zeroing its activation in the unpruned model."""
    original = randomized_bn_model if arch == "separable" else residual_model()
    x = torch.randn(6, 4, 40)
    data = (x, torch.tensor([0, 1, 2, 0, 1, 2]))
    pruned, record = prune_structured(original, rate=0.25, criterion=criterion, seed=5, data=data)
    assert all(len(block["removed"]) > 0 for block in record["blocks"])
    with torch.no_grad():
        actual = pruned(x)
    torch.testing.assert_close(actual, masked_forward(original, record, x), atol=1e-5, rtol=1e-5)
    assert not pruned.training
    for block in pruned.blocks:  # depthwise groups follow the channels
        assert block.depthwise.groups == block.depthwise.in_channels == block.depthwise.out_channels


def test_identity_skip_prunes_the_same_channels_in_both_blocks():
    pruned, record = prune_structured(residual_model(), rate=0.25, criterion="l1")
    rows = {row["block"]: row for row in record["blocks"]}
    assert rows["blocks.0"]["coupled_with"] == ["blocks.1"] and rows["blocks.2"]["coupled_with"] == []
    assert rows["blocks.0"]["removed"] == rows["blocks.1"]["removed"]
    assert [b.width for b in spec_of(pruned).blocks] == [12, 12, 9]
    assert record["parameters_after"] == sum(p.numel() for p in pruned.parameters())


def test_layer_scope_floor_keeps_a_channel_and_says_so():
    model = build_model(ModelSpec(3, 2, (BlockSpec(3, 1, 2), BlockSpec(3, 1, 8))))
    pruned, record = prune_structured(model, rate=0.9, criterion="l1")
    assert [b.width for b in spec_of(pruned).blocks] == [1, 1]
    assert [row["floor_applied"] for row in record["blocks"]] == [True, False]  # 0.9·8 rounds to 7
    _, floored = prune_structured(model, rate=0.9, criterion="l1", min_channels=2)
    assert [row["channels_after"] for row in floored["blocks"]] == [2, 2]


def test_global_scope_ranks_all_blocks_and_respects_its_floor(randomized_bn_model):
    model = randomized_bn_model
    with torch.no_grad():  # blocks.1's filters are tiny everywhere except one channel
        model.blocks[1].pointwise.weight.mul_(1e-3)
        model.blocks[1].pointwise.weight[0] = 1.0
    # Max-normalised, blocks.1 ranks 11 channels lowest; a floor of 2 keeps two of them.
    pruned, record = prune_structured(model, rate=0.5, criterion="l1", scope="global", min_channels=2)
    rows = {row["block"]: row for row in record["blocks"]}
    assert rows["blocks.1"]["channels_after"] == 2 and rows["blocks.1"]["floor_applied"]
    assert 0 not in rows["blocks.1"]["removed"]
    total_removed = sum(len(row["removed"]) for row in record["blocks"])
    assert total_removed == round(0.5 * (16 + 12))
    assert not rows["blocks.0"]["floor_applied"]
    assert [b.width for b in spec_of(pruned).blocks] == [16 - 4, 2]


def test_per_block_rates_and_not_prunable_blocks(randomized_bn_model):
    pruned, record = prune_structured(randomized_bn_model, rate={"blocks.1": 0.5}, criterion="l1")
    assert [b.width for b in spec_of(pruned).blocks] == [16, 6]
    pruned, record = prune_structured(
        randomized_bn_model, rate=0.5, criterion="l2", not_prunable=["blocks.0"]
    )
    assert [b.width for b in spec_of(pruned).blocks] == [16, 6]
    assert [row["prunable"] for row in record["blocks"]] == [False, True]


def test_not_prunable_block_keeps_its_identity_coupled_partner_whole():
    pruned, record = prune_structured(residual_model(), rate=0.5, criterion="l1", not_prunable=["blocks.1"])
    assert [b.width for b in spec_of(pruned).blocks] == [16, 16, 6]


def test_pruning_leaves_the_original_untouched(randomized_bn_model):
    before = {k: v.clone() for k, v in randomized_bn_model.state_dict().items()}
    prune_channels(randomized_bn_model, 0.5)
    for key, value in randomized_bn_model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"criterion": "nonsense"}, "pruning criterion 'nonsense' is not known"),
        ({"scope": "network"}, "pruning scope 'network' is not known"),
        ({"rate": 1.0}, r"prune rate must be in \(0, 1\)"),
        ({"rate": 0.0}, r"prune rate must be in \(0, 1\)"),
        ({"rate": {"blocks.0": 1.5}}, r"rate\['blocks.0'\] must be in \[0, 1\)"),
        ({"rate": {"blocks.9": 0.5}}, r"rate: \['blocks.9'\] match no block"),
        ({"rate": {"blocks.0": 0.5}, "scope": "global"}, "need scope 'layer'"),
        ({"not_prunable": ["blocks.7"]}, r"'not_prunable\[0\]': 'blocks.7' matches no block"),
        ({"min_channels": 0}, "min_channels must be at least 1"),
    ],
)
def test_bad_settings_fail_naming_the_setting(randomized_bn_model, settings, message):
    arguments = {"rate": 0.5, "criterion": "l1", **settings}
    with pytest.raises(UserError, match=message) as raised:  # shown as one line by the workflow
        prune_structured(randomized_bn_model, **arguments)
    assert isinstance(raised.value, ValueError) and "\n" not in str(raised.value)


def test_not_prunable_problems_name_the_config_key():
    assert not_prunable_problems(["blocks.1", "blocks.7", "head"], 2) == [
        "config key 'model.not_prunable[1]': 'blocks.7' matches no block; blocks are blocks.0 … blocks.1",
        "config key 'model.not_prunable[2]': 'head' matches no block; blocks are blocks.0 … blocks.1",
    ]
    assert not_prunable_problems(["blocks.0"], 1) == []


def test_block_name_checks_import_no_torch():
    """The workflow checks config with them before any job starts, where importing torch is too slow."""
    code = "import sys, prunequant.names; assert not any(m.startswith('torch') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
