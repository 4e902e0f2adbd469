import pytest
import torch

from prunequant.model import BlockSpec, ModelSpec, build_model, spec_of
from prunequant.prune import channels_to_remove, prune_channels


@pytest.mark.parametrize("rate,expected", [(0.05, 133), (0.10, 126), (0.15, 119)])
def test_reference_rates_give_the_reference_widths(rate, expected):
    model = build_model(ModelSpec(20, 10, (BlockSpec(25, 2, 140),)))
    pruned, record = prune_channels(model, rate)
    assert spec_of(pruned).blocks[0].width == expected
    assert record["parameters_after"] == sum(p.numel() for p in pruned.parameters())
    assert record["parameters_after"] == {133: 4919, 126: 4688, 119: 4457}[expected]


def test_lowest_l1_channels_are_removed():
    scores = torch.tensor([5.0, 1.0, 3.0, 0.5, 4.0])
    assert channels_to_remove(scores, 0.4) == [1, 3]
    with pytest.raises(ValueError):
        channels_to_remove(scores, 1.0)


def test_pruned_model_matches_the_original_with_those_channels_masked(randomized_bn_model):
    """Removing a channel must equal zeroing its activation in the unpruned model."""
    original = randomized_bn_model
    pruned, record = prune_channels(original, 0.25)
    removed = [block["removed"] for block in record["blocks"]]
    assert all(len(r) > 0 for r in removed)

    def mask(channels):
        def hook(module, inputs, output):
            output = output.clone()
            output[:, channels] = 0
            return output

        return hook

    # A removed channel disappears where it is next consumed: the next block's depthwise
    # output, or the pooled features that feed the head.
    consumers = [block.depthwise for block in original.blocks[1:]] + [original.blocks[-1].pool]
    handles = [layer.register_forward_hook(mask(r)) for layer, r in zip(consumers, removed, strict=True)]
    x = torch.randn(6, 4, 40)
    with torch.no_grad():
        expected = original(x)
        actual = pruned(x)
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    assert not pruned.training
    widths = [b.width for b in spec_of(pruned).blocks]
    assert widths == [16 - 4, 12 - 3]
    assert pruned.blocks[1].depthwise.groups == 12


def test_pruning_leaves_the_original_untouched(randomized_bn_model):
    before = {k: v.clone() for k, v in randomized_bn_model.state_dict().items()}
    prune_channels(randomized_bn_model, 0.5)
    for key, value in randomized_bn_model.state_dict().items():
        assert torch.equal(value, before[key])


def test_unknown_criterion_is_rejected(randomized_bn_model):
    with pytest.raises(ValueError, match="unknown pruning criterion"):
        prune_channels(randomized_bn_model, 0.1, criterion="random")
