import pytest
import torch

from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.prune import (
    block_widths,
    channels_to_remove_at_step,
    iterative_rates,
    iterative_step_rates,
    prune_structured,
    split_epochs,
)


def test_linear_and_cubic_spacing():
    assert iterative_rates(0.6, 3, "linear") == pytest.approx([0.2, 0.4, 0.6])
    # AGP: r_k = r_f (1 - (1 - k/K)^3) → 0.6·(19/27), 0.6·(26/27), 0.6
    assert iterative_rates(0.6, 3, "cubic") == pytest.approx([0.6 * 19 / 27, 0.6 * 26 / 27, 0.6])
    assert iterative_rates(0.5, 1, "cubic") == [0.5]


@pytest.mark.parametrize("total,steps", [(30, 3), (31, 3), (7, 4), (2, 5)])
def test_split_epochs_spends_exactly_the_total(total, steps):
    epochs = split_epochs(total, steps)
    assert len(epochs) == steps and sum(epochs) == total
    assert max(epochs) - min(epochs) <= 1


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: iterative_rates(0.5, 3, "quadratic"), "schedule spacing 'quadratic' is not known"),
        (lambda: iterative_rates(1.2, 3, "linear"), r"final prune rate must be in \(0, 1\)"),
        (lambda: iterative_rates(0.5, 0, "linear"), "steps must be at least 1"),
        (lambda: split_epochs(10, 0), "steps >= 1"),
    ],
)
def test_bad_schedule_settings_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("width", [7, 12, 16, 140])
@pytest.mark.parametrize("spacing", ["linear", "cubic"])
def test_step_counts_land_on_the_one_shot_width(width, spacing):
    current = width
    for rate in iterative_rates(0.55, 4, spacing):
        current -= channels_to_remove_at_step(width, current, rate)
    oneshot = width - round(0.55 * width + 1e-9)
    assert current == oneshot


def test_iterative_pruning_reaches_exactly_the_one_shot_model_size():
    spec = ModelSpec(4, 3, (BlockSpec(5, 2, 17), BlockSpec(3, 1, 11)))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    oneshot, _ = prune_structured(model, rate=0.6, criterion="l1")
    original = block_widths(model)
    current = model
    for rate in iterative_rates(0.6, 3, "cubic"):
        step_rates = iterative_step_rates(original, block_widths(current), rate)
        current, record = prune_structured(current, rate=step_rates, criterion="l1")
        assert not any(row["floor_applied"] for row in record["blocks"])
    assert block_widths(current) == block_widths(oneshot) == {"blocks.0": 7, "blocks.1": 4}
    assert sum(p.numel() for p in current.parameters()) == sum(p.numel() for p in oneshot.parameters())
    # The same fine-tuning budget: one-shot spends it in one go, iterative over its steps.
    assert sum(split_epochs(30, 3)) == sum(split_epochs(30, 1)) == 30
