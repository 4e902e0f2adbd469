import json
import os
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from prunequant import latency
from prunequant.checkpoint import save_model
from prunequant.latency import (
    describe_speedup,
    pinned_threads,
    summarize,
    time_interleaved,
    time_variants,
)
from prunequant.model import BlockSpec, ModelSpec, build_model


class FakeClock:
    """A perf_counter that only moves when a fake runner says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def runner(self, milliseconds):
        """A runner taking ``milliseconds`` (a number, or a callable drawing one per call)."""

        def run():
            self.now += (milliseconds() if callable(milliseconds) else milliseconds) / 1000.0

        return run


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(latency, "perf_counter", fake)
    return fake


def recording_runners(names, calls):
    return {name: (lambda name=name: calls.append(name)) for name in names}


def test_every_runner_once_per_round_in_shuffled_order():
    names = ["a", "b", "c", "d"]
    calls = []
    times = time_interleaved(recording_runners(names, calls), rounds=30, warmup=2, seed=1)
    assert calls[: 2 * len(names)] == names * 2  # warm-up: every runner, untimed
    rounds = [tuple(calls[i : i + 4]) for i in range(2 * len(names), len(calls), len(names))]
    assert len(rounds) == 30
    assert all(sorted(order) == names for order in rounds)
    assert len(set(rounds)) > 5  # 24 possible orders; a fixed order would give 1
    assert set(times) == set(names)
    assert all(values.shape == (30,) for values in times.values())


def test_order_follows_the_seed():
    orders = []
    for seed in (7, 7, 8):
        calls = []
        time_interleaved(recording_runners("abcde", calls), rounds=10, warmup=0, seed=seed)
        orders.append(calls)
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_calls_per_round_and_time_per_call(clock):
    calls = []
    runners = {"x": clock.runner(3.0), "y": lambda: calls.append(None)}
    times = time_interleaved(runners, rounds=4, warmup=1, seed=0, calls_per_round=5)
    assert len(calls) == 1 + 4 * 5
    np.testing.assert_allclose(times["x"], 3.0)  # per call, not per round
    np.testing.assert_allclose(times["y"], 0.0)


@pytest.mark.parametrize(("rounds", "warmup", "calls"), [(0, 1, 1), (3, -1, 1), (3, 1, 0)])
def test_time_interleaved_rejects_bad_counts(rounds, warmup, calls):
    with pytest.raises(ValueError):
        time_interleaved({"a": lambda: None}, rounds=rounds, warmup=warmup, seed=0, calls_per_round=calls)


def test_twice_as_slow_on_a_fake_clock_is_slower_by_half(clock):
    rng = np.random.default_rng(0)
    # A shared disturbance per call: both runners see the same kind of noise.
    runners = {
        "fast": clock.runner(lambda: 1.0 * rng.uniform(1.0, 1.3)),
        "slow": clock.runner(lambda: 2.0 * rng.uniform(1.0, 1.3)),
    }
    times = time_interleaved(runners, rounds=25, warmup=0, seed=0)
    summary = summarize(times, references={"slow": "fast", "fast": "slow"})
    assert summary["slow"]["speedup"] == pytest.approx(0.5, rel=0.2)
    assert summary["slow"]["speedup_high"] < 1.0
    assert summary["slow"]["verdict"] == "slower"
    assert summary["fast"]["verdict"] == "faster"
    assert summary["fast"]["speedup_low"] > 1.0
    assert summary["slow"]["reference"] == "fast"


def test_sleeping_runners_three_times_apart_are_told_apart():
    runners = {"short": lambda: time.sleep(0.002), "long": lambda: time.sleep(0.006)}
    times = time_interleaved(runners, rounds=15, warmup=1, seed=0)
    summary = summarize(times, references={"long": "short"})
    assert summary["long"]["speedup"] < 0.8  # about 1/3; generous for a busy machine
    assert summary["long"]["verdict"] == "slower"


def test_identical_runners_show_no_measurable_difference():
    base = np.random.default_rng(3).uniform(1.0, 2.0, 21)
    # Per-round ratios spread symmetrically around 1 (in log), as for two equal variants.
    ratios = np.exp(np.linspace(-0.2, 0.2, 21))
    times = {"a": base, "b": base * ratios}
    entry = summarize(times, references={"b": "a"})["b"]
    assert entry["speedup_low"] < 1.0 < entry["speedup_high"]
    assert entry["verdict"] == "no measurable difference"


def test_same_runner_twice_on_a_fake_clock_is_no_difference(clock):
    run = clock.runner(1.5)
    summary = summarize(
        time_interleaved({"a": run, "b": run}, rounds=9, warmup=0, seed=0), references={"b": "a"}
    )
    assert summary["b"]["speedup"] == summary["b"]["speedup_low"] == summary["b"]["speedup_high"] == 1.0
    assert summary["b"]["verdict"] == "no measurable difference"


def test_bootstrap_intervals_contain_the_medians():
    rng = np.random.default_rng(11)
    times = {"ref": rng.lognormal(0.0, 0.3, 40), "var": rng.lognormal(-0.5, 0.3, 40)}
    summary = summarize(times, references={"var": "ref"}, seed=4)
    for entry in summary.values():
        assert entry["low_ms"] <= entry["median_ms"] <= entry["high_ms"]
        assert entry["low_ms"] < entry["high_ms"]
    var = summary["var"]
    assert var["speedup_low"] <= var["speedup"] <= var["speedup_high"]
    assert var["speedup"] == pytest.approx(np.median(times["ref"] / times["var"]))
    assert "reference" not in summary["ref"]


def test_summarize_is_seeded():
    times = {"a": np.arange(1.0, 20.0), "b": np.arange(1.0, 20.0)[::-1]}
    assert summarize(times, references={"b": "a"}, seed=2) == summarize(times, references={"b": "a"}, seed=2)


@pytest.mark.parametrize(
    "references",
    [{"b": "missing"}, {"missing": "a"}],
)
def test_summarize_rejects_unknown_references(references):
    with pytest.raises(ValueError, match="must be timed"):
        summarize({"a": np.ones(3), "b": np.ones(3)}, references=references)


def test_summarize_rejects_unpaired_rounds():
    with pytest.raises(ValueError, match="rounds"):
        summarize({"a": np.ones(3), "b": np.ones(4)}, references={"b": "a"})


def test_describe_speedup_names_the_baseline():
    faster = {
        "reference": "fp32",
        "speedup": 2.0,
        "speedup_low": 1.8,
        "speedup_high": 2.2,
        "verdict": "faster",
    }
    same = dict(faster, speedup=1.01, speedup_low=0.95, speedup_high=1.08, verdict="no measurable difference")
    assert describe_speedup(faster) == "2.00x (1.80-2.20) faster than fp32"
    assert describe_speedup(same) == "no measurable difference from fp32 (0.95-1.08x)"


def test_pinned_threads_sets_and_restores():
    threads_before = torch.get_num_threads()
    cores_before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with pinned_threads(1) as cores:
        assert torch.get_num_threads() == 1
        if cores_before is not None:
            assert len(cores) == 1 and os.sched_getaffinity(0) == set(cores)
    assert torch.get_num_threads() == threads_before
    if cores_before is not None:
        assert os.sched_getaffinity(0) == cores_before
    with pytest.raises(ValueError), pinned_threads(0):
        pass


def save_tiny_models(directory, names):
    spec = ModelSpec(in_channels=3, n_classes=2, blocks=(BlockSpec(3, 1, 4),))
    paths = {}
    for index, name in enumerate(names):
        torch.manual_seed(index)
        paths[name] = directory / f"{name}.pt"
        save_model(build_model(spec), paths[name])
    return paths


def save_tiny_onnx(directory, names):
    paths = {}
    for name, op in zip(names, ("Relu", "Neg", "Abs"), strict=False):
        graph = helper.make_graph(
            [helper.make_node(op, ["input"], ["logits"])],
            name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 12])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 12])],
        )
        paths[name] = directory / f"{name.replace('/', '-')}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(paths[name]))
    return paths


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_time_variants_times_every_variant_at_every_batch_size(tmp_path, runtime):
    names = ["baseline", "pruned", "other"]
    save = save_tiny_models if runtime == "torch" else save_tiny_onnx
    artifacts = save(tmp_path, names)
    threads_before = torch.get_num_threads()
    result = time_variants(
        artifacts,
        runtime=runtime,
        n_channels=3,
        length=12,
        threads=1,
        warmup=1,
        rounds=4,
        seed=0,
        batch_sizes=(1, 5),
        references={"baseline": {"pruned": "baseline", "other": "baseline"}},
    )
    assert torch.get_num_threads() == threads_before
    assert json.loads(json.dumps(result)) == result  # JSON-able as it stands
    assert (result["runtime"], result["threads"], result["rounds"], result["warmup"]) == (runtime, 1, 4, 1)
    assert result["batch_sizes"] == [1, 5]
    assert set(result["variants"]) == set(names)
    for name, by_batch in result["variants"].items():
        assert set(by_batch) == {"batch1", "batch5"}
        for entry in by_batch.values():
            assert 0 < entry["low_ms"] <= entry["median_ms"] <= entry["high_ms"]
            assert ("baseline" in entry["speedups"]) == (name != "baseline")
            if name != "baseline":
                assert entry["speedups"]["baseline"]["reference"] == "baseline"


def test_time_variants_rejects_bad_runtime_and_references(tmp_path):
    artifacts = save_tiny_models(tmp_path, ["a"])
    common = dict(n_channels=3, length=12, threads=1, warmup=0, rounds=2, seed=0)
    with pytest.raises(ValueError, match="runtime"):
        time_variants(artifacts, runtime="tvm", references={}, **common)
    with pytest.raises(ValueError, match="not timed"):
        time_variants(artifacts, runtime="torch", references={"baseline": {"a": "b"}}, **common)


def test_time_variants_reports_every_named_reference(tmp_path):
    artifacts = save_tiny_onnx(tmp_path, ["baseline/fp32", "small/fp32", "small/int8"])
    references = {
        "baseline": {"small/fp32": "baseline/fp32", "small/int8": "baseline/fp32"},
        "parent": {"small/int8": "small/fp32"},
    }
    result = time_variants(
        artifacts,
        runtime="onnxruntime",
        references=references,
        n_channels=3,
        length=12,
        threads=1,
        warmup=0,
        rounds=3,
        seed=1,
        batch_sizes=(2,),
    )
    entries = {name: by_batch["batch2"] for name, by_batch in result["variants"].items()}
    assert set(entries["baseline/fp32"]["speedups"]) == set()
    assert set(entries["small/fp32"]["speedups"]) == {"baseline"}
    assert set(entries["small/int8"]["speedups"]) == {"baseline", "parent"}
    assert entries["small/int8"]["speedups"]["parent"]["reference"] == "small/fp32"
    for entry in entries.values():
        assert entry["low_ms"] <= entry["median_ms"] <= entry["high_ms"]
        for speedup in entry["speedups"].values():
            assert speedup["verdict"] in latency.VERDICTS
            assert speedup["speedup_low"] <= speedup["speedup"] <= speedup["speedup_high"]
    with pytest.raises(ValueError, match="not timed"):
        time_variants(
            artifacts,
            runtime="onnxruntime",
            references={"parent": {"small/int8": "missing"}},
            n_channels=3,
            length=12,
            threads=1,
            warmup=0,
            rounds=2,
            seed=0,
        )
