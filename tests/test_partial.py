import inspect
import json

import numpy as np
import pytest
import torch
from torch import nn

from prunequant.errors import UserError
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import (
    deployment_model,
    export_onnx,
    float_nodes_of,
    quantizable_nodes,
    quantize_partial,
)
from prunequant.quantize.partial import onnx_accuracy

N_CHANNELS, LENGTH, N_CLASSES = 6, 48, 4
SPEC = ModelSpec(in_channels=N_CHANNELS, n_classes=N_CLASSES, blocks=(BlockSpec(7, 2, 24),))
# Clipping every activation at its 90th percentile is a deliberately bad recipe: it makes int8 cost
# accuracy in the convolutions (not in the head), so the search has some, not all, layers to return
# to float.
HARSH_RECIPE = {
    "calibration_samples": 64,
    "calibration_method": "Percentile",
    "percentile": 90.0,
    "quant_format": "QOperator",
    "per_channel": False,
}
MILD_RECIPE = HARSH_RECIPE | {"calibration_method": "MinMax", "per_channel": True}


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each class is a sinusoid of its own frequency in its own channel, under noise."""
    labels = rng.integers(0, N_CLASSES, size=n)
    t = np.arange(LENGTH)
    x = rng.normal(0.0, 1.0, size=(n, N_CHANNELS, LENGTH))
    for i, label in enumerate(labels):
        x[i, label] += 1.5 * np.sin(2 * np.pi * (label + 2) * t / LENGTH + rng.uniform(0, 2 * np.pi))
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = synthetic(256, rng)
    x_val, y_val = synthetic(128, rng)
    model = build_model(SPEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(80):
        idx = torch.from_numpy(rng.integers(0, len(xt), size=32))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        optimizer.step()
    directory = tmp_path_factory.mktemp("partial")
    fp32 = export_onnx(
        deployment_model(model.eval()), directory / "fp32.onnx", n_channels=N_CHANNELS, length=LENGTH
    )
    return {"fp32": fp32, "x_train": x_train, "x_val": x_val, "y_val": y_val, "dir": directory}


def run_partial(setup, name: str, *, budget_pp: float, recipe: dict, val_labels=None) -> dict:
    return quantize_partial(
        fp32_path=setup["fp32"],
        int8_path=setup["dir"] / f"{name}.onnx",
        record_path=setup["dir"] / f"{name}.json",
        train_inputs=setup["x_train"],
        val_inputs=setup["x_val"],
        val_labels=setup["y_val"] if val_labels is None else val_labels,
        seed=0,
        budget_pp=budget_pp,
        **recipe,
    )


@pytest.fixture(scope="module")
def harsh(setup):
    return run_partial(setup, "harsh", budget_pp=1.0, recipe=HARSH_RECIPE)


def test_the_fp32_model_learned_something(harsh):
    assert harsh["fp32_val_accuracy"] > 0.7  # chance is 0.25: drops are measured on a real decision surface


def test_partial_keeps_exactly_the_reported_layers_float(setup, harsh):
    assert harsh["full_int8_drop_pp"] > 1.0, (
        "the harsh recipe must cost accuracy for this test to mean anything"
    )
    assert 1 <= len(harsh["float_nodes"]) < len(harsh["layers"]) and not harsh["all_layers_float"]
    assert float_nodes_of(setup["dir"] / "harsh.onnx") == [
        name for name, _ in quantizable_nodes(setup["fp32"]) if name in harsh["float_nodes"]
    ]
    assert set(harsh["ptq"]["float_nodes"]) == set(harsh["float_nodes"])  # graph order there, ranked here
    assert harsh["final_drop_pp"] <= 1.0
    assert harsh["final_val_accuracy"] == pytest.approx(
        onnx_accuracy(setup["dir"] / "harsh.onnx", setup["x_val"], setup["y_val"])
    )
    assert json.loads((setup["dir"] / "harsh.json").read_text()) == harsh


def test_layers_are_ranked_by_their_own_drop(setup, harsh):
    rows = harsh["layers"]
    assert sorted(row["node"] for row in rows) == sorted(name for name, _ in quantizable_nodes(setup["fp32"]))
    assert [row["drop_pp"] for row in rows] == sorted((row["drop_pp"] for row in rows), reverse=True)
    for row in rows:
        assert row["drop_pp"] == pytest.approx(100 * (harsh["fp32_val_accuracy"] - row["val_accuracy"]))
    # Layers go back to float most sensitive first.
    assert harsh["float_nodes"] == [row["node"] for row in rows[: len(harsh["float_nodes"])]]


def test_a_generous_budget_keeps_everything_int8(setup):
    record = run_partial(setup, "generous", budget_pp=100.0, recipe=MILD_RECIPE)
    assert record["float_nodes"] == [] and not record["all_layers_float"]
    assert record["final_val_accuracy"] == record["full_int8_val_accuracy"]
    assert float_nodes_of(setup["dir"] / "generous.onnx") == []


def test_partial_choice_is_deterministic(setup, harsh):
    again = run_partial(setup, "harsh_again", budget_pp=1.0, recipe=HARSH_RECIPE)
    assert again == harsh
    assert (setup["dir"] / "harsh_again.onnx").read_bytes() == (setup["dir"] / "harsh.onnx").read_bytes()


def test_only_validation_data_can_drive_the_choice(setup, harsh):
    # The function has no way to receive test data: no parameter for it, and stray keywords are refused.
    parameters = inspect.signature(quantize_partial).parameters
    assert not [name for name in parameters if "test" in name]
    with pytest.raises(TypeError):
        run_partial(setup, "leak", budget_pp=1.0, recipe=HARSH_RECIPE | {"test_labels": setup["y_val"]})
    # ... while the validation labels it does receive decide the measured drops.
    shuffled = np.random.default_rng(5).permutation(setup["y_val"])
    scrambled = run_partial(setup, "scrambled", budget_pp=1.0, recipe=HARSH_RECIPE, val_labels=shuffled)
    assert scrambled["fp32_val_accuracy"] < harsh["fp32_val_accuracy"] - 0.3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"budget_pp": -1.0}, "budget_pp"), ({"val_labels": np.zeros(3, int)}, "validation")],
)
def test_partial_rejects_bad_arguments(setup, overrides, message):
    arguments = {"budget_pp": 1.0, "recipe": MILD_RECIPE} | overrides
    with pytest.raises(UserError, match=message):
        run_partial(setup, "bad", **arguments)
