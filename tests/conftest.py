import numpy as np
import pytest
import torch

from prunequant.data import PreparedDataset, prepare_dataset, save_dataset
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


def write_prepared_dataset(directory, *, n_samples: int, n_channels: int, length: int) -> PreparedDataset:
    """A prepared 3-class dataset in ``directory/dataset.npz``; the class shifts every value."""
    rng = np.random.default_rng(0)
    y = np.arange(n_samples) % 3
    x = rng.standard_normal((n_samples, n_channels, length)).astype(np.float32) + y[:, None, None]
    np.savez(directory / "raw.npz", X=x, y=y)
    dataset = prepare_dataset(
        source="npz",
        npz_path=directory / "raw.npz",
        length=length,
        length_method="resample",
        val_fraction=0.25,
        test_fraction=0.25,
        seed=0,
    )
    save_dataset(dataset, directory / "dataset.npz", directory / "dataset.json")
    return dataset
