import pytest
import torch

from prunequant.model import BlockSpec, ModelSpec, build_model


@pytest.fixture
def two_block_spec() -> ModelSpec:
    return ModelSpec(in_channels=4, n_classes=3, blocks=(BlockSpec(5, 2, 16), BlockSpec(3, 1, 12)))


@pytest.fixture
def randomized_bn_model(two_block_spec):
    """A model whose BatchNorm statistics are far from identity, as after training."""
    torch.manual_seed(0)
    model = build_model(two_block_spec)
    for block in model.blocks:
        n = block.norm.num_features
        block.norm.running_mean.uniform_(-1, 1)
        block.norm.running_var.uniform_(0.5, 2)
        block.norm.weight.data.uniform_(0.5, 1.5)
        block.norm.bias.data.uniform_(-0.5, 0.5)
        assert n > 0
    return model.eval()
