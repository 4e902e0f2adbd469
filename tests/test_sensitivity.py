import pytest
import torch

from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.prune import block_sensitivity, block_widths, prune_structured, rates_within_drop


@pytest.fixture
def trained_like():
    """A tiny model and a validation split labelled with its own predictions: 100% at rate 0."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(3, 3, (BlockSpec(3, 1, 8), BlockSpec(3, 1, 6)))).eval()
    x = torch.randn(40, 3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, (x, y)


def test_one_curve_per_block_without_fine_tuning(trained_like):
    model, val_data = trained_like
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = block_sensitivity(model, val_data=val_data, rates=[0.5, 0.25, 0.9], criterion="l1", seed=0)
    assert [(row["block"], row["rate"]) for row in rows] == [
        (block, rate) for block in ("blocks.0", "blocks.1") for rate in (0.0, 0.25, 0.5, 0.9)
    ]
    assert all(row["val_accuracy"] == 100.0 for row in rows if row["rate"] == 0.0)
    assert [row["channels_after"] for row in rows] == [8, 6, 4, 1, 6, 4, 3, 1]
    # Each point is the unpruned model with only that block pruned, scored as prune_structured would.
    pruned, _ = prune_structured(model, rate={"blocks.1": 0.5}, criterion="l1")
    with torch.no_grad():
        accuracy = (pruned(val_data[0]).argmax(dim=1) == val_data[1]).float().mean().item() * 100
    assert rows[6]["val_accuracy"] == pytest.approx(accuracy)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_not_prunable_blocks_get_no_curve(trained_like):
    model, val_data = trained_like
    rows = block_sensitivity(
        model, val_data=val_data, rates=[0.5], criterion="random", seed=2, not_prunable=["blocks.0"]
    )
    assert {row["block"] for row in rows} == {"blocks.1"}
    with pytest.raises(ValueError, match="'blocks.4' matches no block"):
        block_sensitivity(
            model, val_data=val_data, rates=[0.5], criterion="l1", seed=0, not_prunable=["blocks.4"]
        )
    with pytest.raises(ValueError, match=r"sensitivity rate must be in \[0, 1\)"):
        block_sensitivity(model, val_data=val_data, rates=[1.5], criterion="l1", seed=0)


def test_rates_within_drop_take_the_largest_rate_within_the_budget():
    rows = [
        {"block": "blocks.0", "rate": 0.0, "val_accuracy": 90.0, "channels_after": 8},
        {"block": "blocks.0", "rate": 0.25, "val_accuracy": 89.5, "channels_after": 6},
        {"block": "blocks.0", "rate": 0.5, "val_accuracy": 88.0, "channels_after": 4},
        {"block": "blocks.0", "rate": 0.75, "val_accuracy": 89.2, "channels_after": 2},
        {"block": "blocks.1", "rate": 0.0, "val_accuracy": 90.0, "channels_after": 6},
        {"block": "blocks.1", "rate": 0.5, "val_accuracy": 70.0, "channels_after": 3},
    ]
    # The largest rate within the drop, even past a dip; 0.0 where no pruned point qualifies.
    assert rates_within_drop(rows, max_drop_pp=1.0) == {"blocks.0": 0.75, "blocks.1": 0.0}
    assert rates_within_drop(rows, max_drop_pp=0.6) == {"blocks.0": 0.25, "blocks.1": 0.0}
    assert rates_within_drop(rows, max_drop_pp=25.0) == {"blocks.0": 0.75, "blocks.1": 0.5}
    with pytest.raises(ValueError, match="no rate-0"):
        rates_within_drop(rows[1:4], max_drop_pp=1.0)


def test_sensitivity_rates_drive_structured_pruning(trained_like):
    model, val_data = trained_like
    rows = block_sensitivity(model, val_data=val_data, rates=[0.25, 0.5, 0.75], criterion="l2", seed=0)
    rates = rates_within_drop(rows, max_drop_pp=100.0)  # every rate qualifies
    assert rates == {"blocks.0": 0.75, "blocks.1": 0.75}
    pruned, record = prune_structured(model, rate=rates, criterion="l2")
    assert block_widths(pruned) == {"blocks.0": 2, "blocks.1": 1}
    assert record["rate"] == rates
