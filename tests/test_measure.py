import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from prunequant.measure import (
    count_macs,
    count_parameters,
    file_bytes,
    make_onnx_runner,
    make_torch_runner,
    onnx_weight_bytes,
    state_dict_weight_bytes,
)
from prunequant.model import BlockSpec, ModelSpec, build_model

SEED_SPEC = ModelSpec(in_channels=20, n_classes=10, blocks=(BlockSpec(25, 2, 140),))


def hand_macs(spec: ModelSpec, length: int) -> int:
    """Depthwise C*L_out*k + pointwise C*W*L_out per block, then the head W*classes."""
    total, channels = 0, spec.in_channels
    for block in spec.blocks:
        conv_length = (length - block.kernel_size) // block.stride + 1
        total += channels * conv_length * block.kernel_size + channels * block.width * conv_length
        channels, length = block.width, conv_length // 2
    return total + channels * spec.n_classes


def test_count_parameters_seed_model():
    assert count_parameters(build_model(SEED_SPEC)) == 5150


@pytest.mark.parametrize(("length", "expected"), [(101, 130_100), (400, 621_800)])
def test_count_macs_seed_model(length, expected):
    assert count_macs(build_model(SEED_SPEC), 20, length) == expected


def test_count_macs_two_blocks_matches_hand_formula():
    spec = ModelSpec(in_channels=6, n_classes=5, blocks=(BlockSpec(7, 2, 24), BlockSpec(5, 3, 11)))
    macs = count_macs(build_model(spec), 6, 120)
    assert macs == hand_macs(spec, 120)
    # Conv lengths: (120 - 7) // 2 + 1 = 57, pooled to 28; (28 - 5) // 3 + 1 = 8.
    assert macs == 6 * 57 * 7 + 6 * 24 * 57 + 24 * 8 * 5 + 24 * 11 * 8 + 11 * 5


def test_count_macs_keeps_training_mode():
    model = build_model(SEED_SPEC).train()
    count_macs(model, 20, 101)
    assert model.training


def test_state_dict_weight_bytes_counts_bn_stats_not_step_counter():
    model = build_model(SEED_SPEC)
    # 5,150 fp32 parameters + BatchNorm running mean and var (2 x 140 fp32).
    assert state_dict_weight_bytes(model) == 5150 * 4 + 2 * 140 * 4
    assert state_dict_weight_bytes(model.double()) == 2 * (5150 * 4 + 2 * 140 * 4)


def test_onnx_weight_bytes_counts_every_storage_field(tmp_path):
    raw = helper.make_tensor("w_raw", TensorProto.FLOAT, [3, 4], np.ones(12, np.float32).tobytes(), raw=True)
    typed = helper.make_tensor("w_typed", TensorProto.INT8, [5], [1, 2, 3, 4, 5])  # stored in int32_data
    wide = helper.make_tensor("w_wide", TensorProto.INT64, [2], [7, 8])
    scalar = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.5])
    constant_value = helper.make_tensor("c", TensorProto.FLOAT, [6], [0.0] * 6)
    constant = helper.make_node("Constant", [], ["c"], value=constant_value)
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [constant, node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[raw, typed, wide, scalar],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert onnx_weight_bytes(path) == 12 * 4 + 5 * 1 + 2 * 8 + 4 + 6 * 4
    assert file_bytes(path) == len(path.read_bytes()) > onnx_weight_bytes(path)


def test_torch_runner_runs_fixed_batch_with_requested_threads():
    previous = torch.get_num_threads()
    try:
        model = build_model(SEED_SPEC).train()
        run = make_torch_runner(model, batch_size=3, n_channels=20, length=101, threads=1, seed=5)
        assert torch.get_num_threads() == 1
        assert not model.training
        first, second = run(), run()
        assert first.shape == (3, 10)
        torch.testing.assert_close(first, second, atol=0, rtol=0)
    finally:
        torch.set_num_threads(previous)


def test_onnx_runner_feeds_same_batch_as_torch_runner(tmp_path):
    # A graph that returns its input shows exactly which batch the runner feeds.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 9])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, 9])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    previous = torch.get_num_threads()
    try:
        fed = make_onnx_runner(path, batch_size=4, n_channels=2, length=9, threads=1, seed=3)()
        torch_batch = make_torch_runner(
            torch.nn.Identity(), batch_size=4, n_channels=2, length=9, threads=1, seed=3
        )()
    finally:
        torch.set_num_threads(previous)
    assert fed.shape == (4, 2, 9)
    np.testing.assert_array_equal(fed, torch_batch.numpy())


def test_onnx_runner_accepts_an_open_session(tmp_path):
    from prunequant.quantize import OnnxClassifier

    graph = helper.make_graph(
        [helper.make_node("Neg", ["input"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, 5])],
    )
    path = tmp_path / "neg.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    session = OnnxClassifier(path, threads=1)
    shape = {"n_channels": 2, "length": 5, "threads": 1, "seed": 2}
    from_session = [make_onnx_runner(session, batch_size=batch, **shape)() for batch in (1, 3)]
    from_path = [make_onnx_runner(path, batch_size=batch, **shape)() for batch in (1, 3)]
    assert [out.shape for out in from_session] == [(1, 2, 5), (3, 2, 5)]
    for ours, theirs in zip(from_session, from_path, strict=True):
        np.testing.assert_array_equal(ours, theirs)
