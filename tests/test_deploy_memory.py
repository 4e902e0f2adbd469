import pytest
import torch

from prunequant.deploy.memory import Step, model_peak_activation_bytes, peak_activation_bytes
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize.fold import fold_batchnorm

# One separable block: depthwise Conv1d(C, C, k, stride, groups=C) -> pointwise Conv1d(C, W, 1) -> ReLU
# -> BatchNorm1d -> AvgPool1d(2) -> mean over time -> Linear(W, classes).
C, T, K, S, W, CLASSES = 4, 41, 5, 2, 16, 3
SPEC = ModelSpec(in_channels=C, n_classes=CLASSES, blocks=(BlockSpec(kernel_size=K, stride=S, width=W),))
T1 = (T - K) // S + 1  # 19 steps after the depthwise conv


def test_separable_block_equals_the_hand_count():
    model = build_model(SPEC).eval()
    # Elements live during each op: its input and its output (no tensor is read twice).
    depthwise = C * T + C * T1
    pointwise = C * T1 + W * T1
    relu = W * T1 + W * T1
    batch_norm = W * T1 + W * T1
    pool = W * T1 + W * (T1 // 2)
    mean = W * (T1 // 2) + W
    linear = W + CLASSES
    hand_count = max(depthwise, pointwise, relu, batch_norm, pool, mean, linear)
    peak = model_peak_activation_bytes(model, torch.zeros(1, C, T), element_size=4, fuse_activations=False)
    assert peak.bytes == 4 * hand_count == 4 * 2 * W * T1
    assert peak.step == "relu"


def test_int8_folded_block_with_relu_fused_equals_the_hand_count():
    """BatchNorm folded away, the ReLU run in place on the pointwise conv's output."""
    folded = fold_batchnorm(build_model(SPEC).eval())
    pooled = W * (T1 // 2)
    hand_count = max(C * T + C * T1, C * T1 + W * T1, W * T1 + pooled, pooled + W, W + CLASSES)
    peak = model_peak_activation_bytes(folded, torch.zeros(1, C, T), element_size=1)
    assert peak.bytes == hand_count == W * T1 + pooled
    unfused = model_peak_activation_bytes(
        folded, torch.zeros(1, C, T), element_size=1, fuse_activations=False
    )
    assert unfused.bytes == 2 * W * T1  # a separate ReLU output is the larger pair


def test_element_size_scales_the_estimate():
    model = build_model(SPEC).eval()
    fp32 = model_peak_activation_bytes(model, torch.zeros(1, C, T), element_size=4)
    int8 = model_peak_activation_bytes(model, torch.zeros(1, C, T), element_size=1)
    assert fp32.bytes == 4 * int8.bytes


def test_residual_skip_keeps_the_block_input_alive():
    """The skip reads the block input after the main branch, so it is live through every op."""
    spec = ModelSpec(C, CLASSES, (BlockSpec(K, 1, C, skip="identity"),), arch="residual")
    folded = fold_batchnorm(build_model(spec).eval())
    block_input, padded, branch = C * T, C * (T + K - 1), C * T  # stride 1: T steps out
    pooled = C * (T // 2)
    live_during = {
        "pad": block_input + padded,
        "depthwise": block_input + padded + branch,
        "pointwise": block_input + branch + branch,
        "add": block_input + branch + branch,  # the ReLU then runs in place on the sum
        "pool": branch + pooled,
        "mean": pooled + C,
        "linear": C + CLASSES,
    }
    peak = model_peak_activation_bytes(folded, torch.zeros(1, C, T), element_size=1)
    assert peak.bytes == max(live_during.values()) == live_during["depthwise"]


def test_aliased_reshape_shares_its_input_buffer():
    steps = [
        Step("conv", ("x",), ("a",)),
        Step("view", ("a",), ("b",), aliases_input=True),
        Step("head", ("b",), ("y",)),
    ]
    elements = {"x": 10, "a": 100, "b": 100, "y": 1}
    peak = peak_activation_bytes(steps, elements, graph_inputs=["x"], graph_outputs=["y"], element_size=1)
    assert peak.bytes == 110 and peak.step == "conv"
    copied = [Step(s.name, s.inputs, s.outputs) for s in steps]
    peak = peak_activation_bytes(copied, elements, graph_inputs=["x"], graph_outputs=["y"], element_size=1)
    assert peak.bytes == 200 and peak.step == "view"


def test_unknown_tensor_is_an_error():
    with pytest.raises(ValueError, match="'z'"):
        peak_activation_bytes(
            [Step("op", ("z",), ("y",))], {"y": 1}, graph_inputs=["x"], graph_outputs=["y"], element_size=1
        )
