import pytest
import torch

from prunequant.checkpoint import load_model, save_model
from prunequant.model import (
    BlockSpec,
    CropToEven,
    ModelSpec,
    SeparableCNN,
    build_model,
    prunable_block_names,
    spec_of,
    training_form,
)
from prunequant.prune import prune_structured
from prunequant.quantize.fold import deployment_model, fold_batchnorm


def test_seed_model_has_the_reference_shape_and_parameter_count():
    spec = ModelSpec(in_channels=20, n_classes=10, blocks=(BlockSpec(25, 2, 140),))
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == 5150
    assert model(torch.randn(3, 20, 101)).shape == (3, 10)
    block = model.blocks[0]
    assert block.depthwise.groups == 20 and block.depthwise.kernel_size == (25,)
    assert block.pointwise.out_channels == 140


def test_spec_round_trips_through_dict_and_model(two_block_spec):
    assert ModelSpec.from_dict(two_block_spec.to_dict()) == two_block_spec
    assert spec_of(build_model(two_block_spec)) == two_block_spec


def test_output_length_follows_conv_and_pool_arithmetic(two_block_spec):
    # (40-5)//2+1 = 18 -> pool 9; (9-3)//1+1 = 7 -> pool 3
    assert two_block_spec.output_length(40) == 3
    with pytest.raises(ValueError, match="too short"):
        two_block_spec.check_input_length(8)


def test_checkpoint_round_trip_rebuilds_a_pruned_shape(tmp_path):
    spec = ModelSpec(in_channels=3, n_classes=2, blocks=(BlockSpec(3, 1, 7), BlockSpec(3, 1, 5)))
    model = build_model(spec).eval()
    save_model(model, tmp_path / "m.pt", {"note": "pruned"})
    loaded, metadata = load_model(tmp_path / "m.pt")
    assert spec_of(loaded) == spec
    assert metadata == {"note": "pruned"}
    x = torch.randn(2, 3, 30)
    torch.testing.assert_close(loaded(x), model(x))


class Payload:
    """Stands for any pickled object that is not plain tensors and containers."""


def test_checkpoint_refuses_arbitrary_pickled_objects(tmp_path):
    torch.save({"spec": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_model(tmp_path / "evil.pt")


RESIDUAL = ModelSpec(
    in_channels=3,
    n_classes=4,
    blocks=(BlockSpec(5, 2, 8), BlockSpec(4, 1, 8), BlockSpec(3, 1, 6)),
    arch="residual",
)


def randomize_batchnorm(model):
    generator = torch.Generator().manual_seed(0)
    for block in model.blocks:
        n = block.norm.num_features
        block.norm.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
        block.norm.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
        block.norm.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        block.norm.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def test_residual_blocks_pick_identity_or_projection_skips():
    model = build_model(RESIDUAL)
    assert [type(block.skip).__name__ for block in model.blocks] == ["Conv1d", "Identity", "Conv1d"]
    assert model.blocks[0].skip.stride == (2,)
    assert model(torch.randn(2, 3, 33)).shape == (2, 4)
    assert spec_of(model) == RESIDUAL
    assert ModelSpec.from_dict(RESIDUAL.to_dict()) == RESIDUAL


@pytest.mark.parametrize("arch", ["separable", "residual"])
@pytest.mark.parametrize("length", [60, 61, 80, 81])
def test_output_length_matches_the_forward_pass(arch, length):
    spec = ModelSpec(3, 4, RESIDUAL.blocks, arch=arch)
    model = build_model(spec).eval()
    with torch.no_grad():
        features = model.blocks(torch.randn(1, 3, length))
    assert features.shape[-1] == spec.output_length(length)


def test_residual_length_check_names_the_arch():
    assert RESIDUAL.output_length(4) == 0
    with pytest.raises(ValueError, match="too short for residual blocks"):
        RESIDUAL.check_input_length(4)


def test_dicts_written_before_arch_load_as_separable(two_block_spec):
    old = two_block_spec.to_dict()
    del old["arch"]
    for block in old["blocks"]:
        del block["skip"]
    assert ModelSpec.from_dict(old) == two_block_spec
    assert isinstance(build_model(ModelSpec.from_dict(old)), SeparableCNN)


def test_unknown_arch_and_misplaced_skip_are_rejected():
    with pytest.raises(ValueError, match="arch 'dense' is not known"):
        ModelSpec(3, 2, (BlockSpec(3, 1, 4),), arch="dense")
    with pytest.raises(ValueError, match="needs arch 'residual'"):
        ModelSpec(3, 2, (BlockSpec(3, 1, 4, skip="conv"),))
    with pytest.raises(ValueError, match="identity skip needs stride 1"):
        build_model(ModelSpec(3, 2, (BlockSpec(3, 2, 3, skip="identity"),), arch="residual"))


def test_prunable_block_names_list_every_block():
    assert prunable_block_names(RESIDUAL) == ["blocks.0", "blocks.1", "blocks.2"]


@pytest.mark.parametrize("arch", ["separable", "residual"])
def test_pruned_checkpoint_round_trips_with_weights_only(tmp_path, arch):
    spec = ModelSpec(3, 4, RESIDUAL.blocks, arch=arch)
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(spec))
    pruned, record = prune_structured(model, rate=0.5, criterion="l1")
    save_model(pruned, tmp_path / "m.pt", {"pruning": record})
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["spec"]["arch"] == arch
    loaded, metadata = load_model(tmp_path / "m.pt")
    assert type(loaded) is type(model) and spec_of(loaded) == spec_of(pruned)
    assert metadata["pruning"]["spec"] == spec_of(pruned).to_dict()
    x = torch.randn(2, 3, 81)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned(x))


def test_pruning_that_equalises_a_projection_pins_its_skip(tmp_path):
    """blocks.1 maps 8 -> 4 channels through a 1x1 skip; pruned to 4 -> 4 it must stay a 1x1 skip."""
    spec = ModelSpec(3, 2, (BlockSpec(3, 1, 8), BlockSpec(3, 1, 4)), arch="residual")
    model = randomize_batchnorm(build_model(spec))
    pruned, _ = prune_structured(model, rate={"blocks.0": 0.5}, criterion="l1")
    assert spec_of(pruned).blocks[1] == BlockSpec(3, 1, 4, skip="conv")
    save_model(pruned, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned(x))


@pytest.mark.parametrize("arch", ["separable", "residual"])
@pytest.mark.parametrize("n_blocks", [1, 3])
def test_deployment_form_is_exact_for_both_archs(arch, n_blocks):
    spec = ModelSpec(3, 4, RESIDUAL.blocks[:n_blocks], arch=arch)
    torch.manual_seed(n_blocks)
    model = randomize_batchnorm(build_model(spec))
    folded, deployed = fold_batchnorm(model), deployment_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in deployed.modules())
    x = torch.randn(5, 3, 81)
    with torch.no_grad():
        expected = model(x)
        assert (folded(x) - expected).abs().max() < 1e-4
        assert (deployed(x) - expected).abs().max() < 1e-4


@pytest.mark.parametrize("arch", ["separable", "residual"])
@pytest.mark.parametrize("length", [101, 100])
def test_training_form_gives_the_models_outputs_and_gradients_and_restores_the_pool(arch, length):
    spec = ModelSpec(6, 3, (BlockSpec(5, 2, 8), BlockSpec(3, 1, 10)), arch=arch)
    torch.manual_seed(0)
    model = build_model(spec).train()
    x = torch.randn(4, 6, length)
    pool = model.blocks[-1].pool

    def outputs_and_gradients():
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    expected, expected_grads = outputs_and_gradients()
    keys = list(model.state_dict())
    with training_form(model):
        assert isinstance(model.blocks[-1].pool, CropToEven)
        assert model.blocks[0].pool is not pool and isinstance(model.blocks[0].pool, torch.nn.AvgPool1d)
        # both depthwise convs (the second one's input gradient too) take the batched weight gradient
        assert all(type(block.depthwise) is not torch.nn.Conv1d for block in model.blocks)
        assert list(model.state_dict()) == keys
        got, got_grads = outputs_and_gradients()
    assert model.blocks[-1].pool is pool
    assert all(type(block.depthwise) is torch.nn.Conv1d for block in model.blocks)
    torch.testing.assert_close(got, expected)
    for name in expected_grads:
        torch.testing.assert_close(got_grads[name], expected_grads[name])


def test_training_form_leaves_a_pool_it_cannot_replace_exactly():
    model = build_model(ModelSpec(6, 3, (BlockSpec(5, 2, 8),)))
    model.blocks[-1].pool = torch.nn.AvgPool1d(3)  # a mean of triples is not a crop's mean
    with training_form(model):
        assert isinstance(model.blocks[-1].pool, torch.nn.AvgPool1d)
    with training_form(torch.nn.Linear(2, 2)) as other:
        assert isinstance(other, torch.nn.Linear)
