import pytest
import torch

from prunequant.checkpoint import load_model, save_model
from prunequant.model import BlockSpec, ModelSpec, build_model, spec_of


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
