"""Does int8 pay on the seed model in ONNX Runtime, and where does the int8 graph spend its time?

Builds the seed model (one block: depthwise Conv1d(20, 20, k=25, s=2) → pointwise Conv1d(20, 140, 1)
→ ReLU → BatchNorm1d → AvgPool1d(2) → mean → Linear(140, 10)) with random weights and BatchNorm
statistics measured on random inputs, exports its deployment form to fp32 ONNX (the graph every
int8 form quantizes), quantizes it with several candidate recipes (graph format, weight scales,
layers kept in float, the int8-only graph rewrites on or off) and times every form
at batch 1 and 64 in this one process: interleaved rounds, each form once per round in a shuffled
order, one intra-op thread. Each fp32 form is timed at every graph optimisation level and the
fastest one is the baseline. Reports per-form medians, the median ratio fastest-fp32 / int8 with a
paired bootstrap interval over rounds, top-1 agreement and logit error of every int8 form against
fp32 on held-out random inputs, and ORT's profile (per-op-type share of kernel time).
``--channels/--length/--width/--classes`` time another one-block shape, e.g. the default data's
(JapaneseVowels: 12 channels x 100 steps, 9 classes; width 140, or 70 after pruning half).

    python bench/int8_profile.py > bench/results/int8-profile.txt
    python bench/int8_profile.py --channels 12 --length 100 --classes 9 --width 70
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import deployment_model, export_onnx
from prunequant.quantize.agreement import agreement
from prunequant.quantize.ptq import quantize_ptq
from prunequant.quantize.runtime import session_options

# The seed shape; --channels/--length/--width/--classes give another (e.g. the default data's).
N_CHANNELS, LENGTH, WIDTH, N_CLASSES = 20, 101, 140, 10
DEPTHWISE, POINTWISE, HEAD = "node_conv1d", "node_conv1d_1", "node_linear"  # node names in the export
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,  # adds layout (NCHWc / NHWC) transforms
}
DEFAULT = "QOperator per-channel"
RECIPES = {  # name: quantize_ptq settings besides the calibration; int8-only rewrites on unless said
    DEFAULT: {"quant_format": "QOperator", "per_channel": True},
    "QOperator per-channel, int8 logits, channels-first pool": {
        "quant_format": "QOperator",
        "per_channel": True,
        "lean_tail": False,
    },
    "QOperator per-channel, depthwise channels not padded": {
        "quant_format": "QOperator",
        "per_channel": True,
        "depthwise_channel_multiple": 1,
    },
    "QOperator per-tensor": {"quant_format": "QOperator", "per_channel": False},
    "QDQ per-channel": {"quant_format": "QDQ", "per_channel": True},
    "QDQ per-tensor": {"quant_format": "QDQ", "per_channel": False},
    "QOperator per-channel, depthwise float": {
        "quant_format": "QOperator",
        "per_channel": True,
        "nodes_to_exclude": [DEPTHWISE],
    },
    "QOperator per-channel, head float": {
        "quant_format": "QOperator",
        "per_channel": True,
        "nodes_to_exclude": [HEAD],
    },
}


# The depthwise input's extra channels as the previous graph made them: a Pad with the input's
# zero point in place of the Gather that copies its last channel (same outputs; timed side by side).
PAD_FORM = "QOperator per-channel, extra input channels by a Pad"


def with_zero_point_pad(model: onnx.ModelProto) -> onnx.ModelProto:
    """The QOperator model with each depthwise conv's channel Gather replaced by a zero-point Pad."""
    graph = model.graph
    for gather in [
        node for node in graph.node if node.op_type == "Gather" and node.name.endswith("_channel_pad")
    ]:
        conv = next(node for node in graph.node if gather.output[0] in node.input)
        pad = onnx.helper.make_node(
            "Pad",
            [gather.input[0], f"{conv.name}_pads_channels", conv.input[2]],
            list(gather.output),
            name=gather.name,
        )
        graph.node.insert(list(graph.node).index(gather), pad)
        graph.node.remove(gather)
    onnx.checker.check_model(model)
    return model


def build_fp32(directory: Path, spec: ModelSpec, length: int, seed: int) -> Path:
    """One-block model, random weights, BatchNorm statistics from random inputs; deployment form exported."""
    torch.manual_seed(seed)
    model = build_model(spec)
    for block in model.blocks:
        block.norm.momentum = None  # cumulative average: running stats = stats of every batch seen
        with torch.no_grad():
            block.norm.weight.uniform_(0.5, 1.5)
            block.norm.bias.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(torch.randn(64, spec.in_channels, length))
    model.eval()
    return export_onnx(
        deployment_model(model), directory / "fp32.onnx", n_channels=spec.in_channels, length=length
    )


def make_session(path: Path, level: str, *, profile_prefix: str | None = None) -> ort.InferenceSession:
    options = session_options(1)
    options.graph_optimization_level = LEVELS[level]
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_interleaved(sessions: dict, batches: dict, *, rounds: int, calls: dict, seed: int) -> dict:
    """Per form and batch, one value per round: the median per-call ms of ``calls[batch]`` calls."""
    rng = np.random.default_rng(seed)
    keys = [(form, batch) for form in sessions for batch in batches]
    for form, batch in keys:  # warm-up: allocations, prepacked weights, caches
        for _ in range(20):
            sessions[form].run(None, {"input": batches[batch]})
    times = defaultdict(list)
    for _ in range(rounds):
        for index in rng.permutation(len(keys)):
            form, batch = keys[index]
            feed = {"input": batches[batch]}
            run = sessions[form].run
            per_call = np.empty(calls[batch])
            for i in range(calls[batch]):
                start = time.perf_counter()
                run(None, feed)
                per_call[i] = time.perf_counter() - start
            times[(form, batch)].append(float(np.median(per_call)) * 1e3)
    return {key: np.asarray(value) for key, value in times.items()}


def ratio_with_interval(baseline: np.ndarray, candidate: np.ndarray, seed: int, n_boot: int = 4000) -> tuple:
    """median(baseline) / median(candidate), and a 95% paired bootstrap interval over rounds."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(baseline), size=(n_boot, len(baseline)))
    boot = np.median(baseline[idx], axis=1) / np.median(candidate[idx], axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(np.median(baseline) / np.median(candidate)), float(low), float(high)


def op_time_shares(path: Path, level: str, batch: np.ndarray, calls: int, directory: Path) -> tuple:
    """ORT profiler: share of summed kernel time per op type, and mean kernel ms per call."""
    session = make_session(path, level, profile_prefix=str(directory / f"profile_{path.stem}_{len(batch)}"))
    for _ in range(calls):
        session.run(None, {"input": batch})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]  # microseconds
    total = sum(per_op.values())
    shares = {op: dur / total for op, dur in sorted(per_op.items(), key=lambda item: -item[1])}
    return shares, total / calls / 1e3


def machine_line() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown"
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0].split()
    simd = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if flag in flags]
    return f"{model}, {os.cpu_count()} vCPU, SIMD: {' '.join(simd) or 'none listed'}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds")
    parser.add_argument("--calls-b1", type=int, default=200, help="timed calls per round at batch 1")
    parser.add_argument("--calls-b64", type=int, default=10, help="timed calls per round at batch 64")
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=N_CHANNELS, help="input channels")
    parser.add_argument("--length", type=int, default=LENGTH, help="input time steps")
    parser.add_argument("--width", type=int, default=WIDTH, help="pointwise output channels")
    parser.add_argument("--classes", type=int, default=N_CLASSES)
    args = parser.parse_args()
    spec = ModelSpec(args.channels, args.classes, (BlockSpec(25, 2, args.width),))
    torch.set_num_threads(1)  # torch only builds the model; keep its pool out of ORT's way
    rng = np.random.default_rng(args.seed)
    calibration = rng.standard_normal((512, args.channels, args.length), dtype=np.float32)
    held_out = rng.standard_normal((2048, args.channels, args.length), dtype=np.float32)
    batches = {1: held_out[:1].copy(), 64: held_out[:64].copy()}

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        fp32 = build_fp32(directory, spec, args.length, args.seed)
        fp32_forms = {"fp32 exported": fp32}
        paths = {}
        for index, (name, recipe) in enumerate(RECIPES.items()):
            paths[name] = directory / f"int8_{index}.onnx"
            quantize_ptq(
                fp32_path=fp32,
                int8_path=paths[name],
                record_path=directory / f"int8_{index}.json",
                train_inputs=calibration,
                seed=args.seed,
                calibration_samples=args.calibration_samples,
                calibration_method="MinMax",
                **recipe,
            )
        paths[PAD_FORM] = directory / "int8_pad.onnx"
        onnx.save(with_zero_point_pad(onnx.load(str(paths[DEFAULT]))), str(paths[PAD_FORM]))
        sessions = {
            f"{form}, {level}": make_session(path, level)
            for form, path in fp32_forms.items()
            for level in LEVELS
        }
        sessions |= {f"int8 {name}, all": make_session(path, "all") for name, path in paths.items()}
        sessions |= {
            f"int8 {DEFAULT}, {level}": make_session(paths[DEFAULT], level) for level in ("basic", "extended")
        }

        fp32_logits = sessions["fp32 exported, all"].run(None, {"input": held_out})[0]
        quality = {
            form: agreement(fp32_logits, session.run(None, {"input": held_out})[0])
            for form, session in sessions.items()
            if form.startswith("int8")
        }
        calls = {1: args.calls_b1, 64: args.calls_b64}
        times = time_interleaved(sessions, batches, rounds=args.rounds, calls=calls, seed=args.seed)

        print(f"# machine: {machine_line()}")
        print(f"# onnxruntime {ort.__version__}, numpy {np.__version__}, python {platform.python_version()}")
        print(f"# command: python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
        print(
            f"# one-block model [{args.channels} x {args.length}] -> width {args.width}, "
            f"MinMax calibration on {args.calibration_samples} "
            f"random normal inputs; {args.rounds} interleaved rounds, each form once per round, shuffled, "
            f"{args.calls_b1} calls (b1) / {args.calls_b64} calls (b64) per round, 1 intra-op thread"
        )
        print("# agreement / logit error: int8 vs fp32 on 2048 held-out random inputs")
        print(f"# 1/5/15-min load average after timing: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print()
        fastest = {
            b: min((f for f in sessions if f.startswith("fp32")), key=lambda f: np.median(times[(f, b)]))
            for b in (1, 64)
        }
        header = f"{'form (graph optimisation level)':62s} {'b1 ms':>8s} {'b64 ms':>8s}"
        print(
            header
            + f" {'b1 ratio [95% CI]':>22s} {'b64 ratio [95% CI]':>22s} {'agree %':>8s} {'max |dlogit|':>12s}"
        )
        for form in sessions:
            cells = [f"{np.median(times[(form, b)]):8.4f}" for b in (1, 64)]
            line = f"{form:62s} {' '.join(cells)}"
            for b in (1, 64):
                ratio, low, high = ratio_with_interval(times[(fastest[b], b)], times[(form, b)], args.seed)
                line += f" {f'{ratio:.2f} [{low:.2f}, {high:.2f}]':>22s}"
            if form in quality:
                line += f" {quality[form]['agreement_pct']:8.2f} {quality[form]['max_abs_logit_error']:12.4f}"
            print(line)
        print()
        print(
            f"# ratio = median ms of the fastest fp32 form ({fastest[1]} at b1, {fastest[64]} at b64) / form"
        )
        print()
        profiled = [*((form, path, "all") for form, path in fp32_forms.items())]
        profiled += [(f"int8 {name}", path, "all") for name, path in paths.items()]
        for label, path, level in profiled:
            for b in (1, 64):
                shares, kernel_ms = op_time_shares(path, level, batches[b], 20 * calls[b], directory)
                share_text = ", ".join(f"{op} {100 * share:.0f}%" for op, share in shares.items())
                wall = np.median(times[(f"{label}, {level}", b)])
                print(
                    f"profile {label} ({level}) b{b}: {kernel_ms:.4f} ms/call in kernels, profiler on "
                    f"({wall:.4f} ms/call timed without it); " + share_text
                )


if __name__ == "__main__":
    main()
