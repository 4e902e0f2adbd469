import pytest
import torch
from torch import nn

from prunequant.engine import TrainConfig, train
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.prune import (
    apply_masks,
    magnitude_masks,
    mask_holder,
    sparsity_record,
    storage_bytes,
    storage_explanation,
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(ModelSpec(3, 2, (BlockSpec(3, 1, 8), BlockSpec(3, 1, 6)))).eval()


LAYERS = ["blocks.0.depthwise", "blocks.0.pointwise", "blocks.1.depthwise", "blocks.1.pointwise", "head"]


def test_layer_masks_zero_the_smallest_weights_of_every_conv_and_the_head(model):
    masks = magnitude_masks(model, 0.5)
    assert list(masks) == LAYERS
    for name, module in model.named_modules():
        if name not in masks:
            continue
        weight, keep = module.weight.detach(), masks[name]
        assert keep.shape == weight.shape and keep.dtype == torch.bool
        assert int((~keep).sum()) == round(0.5 * weight.numel() + 1e-9)
        assert weight[~keep].abs().max() <= weight[keep].abs().min()


def test_global_masks_share_one_threshold_and_keep_every_layer_alive(model):
    masks = magnitude_masks(model, 0.7, scope="global")
    weights = dict(model.named_modules())
    kept = torch.cat([weights[n].weight.detach()[m].abs() for n, m in masks.items()])
    dropped = torch.cat([weights[n].weight.detach()[~m].abs() for n, m in masks.items()])
    assert dropped.max() <= kept.min()
    assert len(dropped) == round(0.7 * (len(kept) + len(dropped)))
    with torch.no_grad():  # a layer of tiny weights would lose everything but keeps its largest one
        model.head.weight.mul_(1e-6)
    masks = magnitude_masks(model, 0.5, scope="global")
    assert int(masks["head"].sum()) == 1


def test_not_prunable_blocks_are_left_dense(model):
    masks = magnitude_masks(model, 0.5, not_prunable=["blocks.0"])
    assert list(masks) == ["blocks.1.depthwise", "blocks.1.pointwise", "head"]


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"sparsity": 1.0}, r"sparsity must be in \(0, 1\)"),
        ({"sparsity": 0.0}, r"sparsity must be in \(0, 1\)"),
        ({"sparsity": 0.5, "scope": "block"}, "sparsity scope 'block' is not known"),
        ({"sparsity": 0.5, "not_prunable": ["blocks.2"]}, "'blocks.2' matches no block"),
    ],
)
def test_bad_sparsity_settings_are_rejected(model, arguments, message):
    with pytest.raises(ValueError, match=message):
        magnitude_masks(model, **arguments)


def test_masks_stay_zero_through_fine_tuning(model, tmp_path):
    masks = magnitude_masks(model, 0.6)
    apply_masks(model, masks)
    before = sparsity_record(model)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, 12, generator=generator)
    y = torch.arange(24) % 2
    config = TrainConfig(
        epochs=2, batch_size=8, lr=1e-2, weight_decay=0.0, lr_schedule="none", lr_step_epochs=1, seed=0
    )
    weights_before = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in masks}

    def run(after_step):
        return train(
            model,
            (x, y),
            (x, y),
            config,
            device=torch.device("cpu"),
            best_path=tmp_path / "best.pt",
            resume_path=tmp_path / "resume.pt",
            job_fingerprint="unstructured-test",
            log=lambda line: None,
            after_step=after_step,
        )

    run(mask_holder(model, masks))
    modules = dict(model.named_modules())
    for name, keep in masks.items():
        weight = modules[name].weight.detach()
        assert torch.all(weight[~keep] == 0), name
        assert not torch.equal(weight[keep], weights_before[name][keep]), name  # training did happen
    assert sparsity_record(model)["totals"] == before["totals"]
    # Without the holder, Adam moves the zeroed weights: the test would notice a holder doing nothing.
    run(None)
    assert sparsity_record(model)["totals"]["zeros"] < before["totals"]["zeros"]


def test_sparsity_record_counts_zeros_per_layer(model):
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[0.0, 1, 0, 2, 0, 3], [4, 0, 0, 0, 0, 5]]))
        for block in model.blocks:  # BatchNorm shifts start at zero; make them the only other nonzeros
            block.norm.bias.fill_(0.1)
    record = sparsity_record(model)
    assert record["layers"]["head"] == {"weights": 12, "zeros": 7, "sparsity": 7 / 12}
    assert record["totals"]["weights"] == sum(row["weights"] for row in record["layers"].values())
    assert record["parameters"] == sum(p.numel() for p in model.parameters())
    assert record["nonzero_parameters"] == record["parameters"] - 7


def test_storage_bytes_equal_a_hand_count():
    layer = nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 3, 0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = layer

    # 8 weights, 3 nonzero, 2 rows of 4 columns; bias 2 fp32 = 8 B in every format.
    # CSR: 3 column indices (< 256: 1 B each) + 3 row pointers (≤ 3: 1 B each) = 6 B.
    # Bitmask: 8 bits = 1 B. int8: 1 B per value + 2 per-row fp32 scales = 8 B.
    assert storage_bytes(Tiny()) == {
        "dense_fp32": 8 * 4 + 8,
        "dense_int8": 8 + 8 + 8,
        "csr_fp32": 3 * 4 + 6 + 8,
        "bitmask_fp32": 3 * 4 + 1 + 8,
        "csr_int8": 3 + 6 + 8 + 8,
        "bitmask_int8": 3 + 1 + 8 + 8,
    }


def test_wide_layers_need_wider_indices_and_csr_loses_at_low_sparsity():
    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(300, 2, bias=False)  # 300 columns: 2-byte column indices

    model = Wide()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.weight[:, ::10] = 0  # 10% sparse: 540 nonzeros (2-byte row pointers)
    storage = storage_bytes(model)
    assert storage["csr_fp32"] == 540 * 4 + 540 * 2 + 3 * 2
    assert storage["csr_fp32"] > storage["dense_fp32"] == 600 * 4
    assert storage["bitmask_fp32"] == 540 * 4 + 75 < storage["dense_fp32"]
    text = storage_explanation(storage)
    assert "csr_fp32 3246 B = 135% of 2400 B" in text
