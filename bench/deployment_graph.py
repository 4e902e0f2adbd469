"""How much faster is int8 than fp32 in ONNX Runtime when both run one graph, against when they did not?

The report's int8 speedup is over the fp32 ONNX model of the same variant. Before the deployment
form (``prunequant.quantize.fold.deployment_model``) moved the crop to the input and wrote the
mean as a GlobalAveragePool in torch, only the int8 path got those changes (as a rewrite of the
exported graph), so the speedup also counted the rewrite. This builds the same model (random
weights, BatchNorm statistics from random inputs, the default study's ``minmax`` recipe) with two
checkouts of this library, ``--before`` (its ``src`` folder) and this one, and times the four
ONNX files in one process: interleaved rounds, each file once per round in a shuffled order, one
intra-op thread on one pinned core. Each speedup is the median of per-round ratios with a 95%
bootstrap interval, and names its baseline. It also checks that the two checkouts' int8 models
give the same logits, and how far apart their fp32 logits are.

    git clone . /tmp/deploy-before && git -C /tmp/deploy-before checkout <commit>
    python bench/deployment_graph.py --before /tmp/deploy-before/src > bench/results/deployment-graph.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from prunequant.latency import cpu_name, describe_speedup, pinned_threads, summarize, time_interleaved
from prunequant.measure import make_onnx_runner
from prunequant.quantize.runtime import OnnxClassifier

# name: (input channels, time steps, pointwise width, classes), one block of kernel 25, stride 2
SHAPES = {
    "default data (JapaneseVowels 12 x 100, width 140; last block output even, no crop)": (12, 100, 140, 9),
    "seed shape (20 x 101, width 140; last block output odd, cropped)": (20, 101, 140, 10),
}
CALLS_PER_ROUND = {1: 50, 64: 2}

BUILD = """
import sys
import numpy as np
import torch
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import deployment_model, export_onnx, quantize_ptq
directory, channels, length, width, classes, seed = sys.argv[1], *map(int, sys.argv[2:])
torch.manual_seed(seed)
model = build_model(ModelSpec(channels, classes, (BlockSpec(25, 2, width),)))
for block in model.blocks:
    block.norm.momentum = None  # running statistics of every batch seen
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
model.train()
with torch.no_grad():
    for _ in range(20):
        model(torch.randn(64, channels, length))
fp32 = export_onnx(
    deployment_model(model.eval()), f"{directory}/fp32.onnx", n_channels=channels, length=length
)
calibration = np.random.default_rng(seed).standard_normal((512, channels, length), dtype=np.float32)
quantize_ptq(fp32_path=fp32, int8_path=f"{directory}/int8.onnx", record_path=f"{directory}/int8.json",
             train_inputs=calibration, seed=seed, calibration_samples=128, calibration_method="MinMax",
             quant_format="QOperator", per_channel=True)
"""


def build(source: Path, directory: Path, shape: tuple[int, ...], seed: int) -> dict[str, Path]:
    """fp32 and int8 ONNX files of one shape, made by the library in ``source``."""
    directory.mkdir(parents=True)
    environment = dict(os.environ, PYTHONPATH=str(source))
    arguments = [str(directory), *map(str, shape), str(seed)]
    subprocess.run(
        [sys.executable, "-c", BUILD, *arguments], env=environment, check=True, capture_output=True
    )
    return {"fp32": directory / "fp32.onnx", "int8": directory / "int8.onnx"}


def logit_check(files: dict[str, dict[str, Path]], channels: int, length: int) -> str:
    inputs = np.random.default_rng(1).standard_normal((2048, channels, length), dtype=np.float32)
    logits = {
        (checkout, precision): OnnxClassifier(path)(inputs)
        for checkout, paths in files.items()
        for precision, path in paths.items()
    }
    int8_same = np.array_equal(logits["before", "int8"], logits["after", "int8"])
    fp32_gap = np.abs(logits["before", "fp32"] - logits["after", "fp32"]).max()
    fp32_top1 = (logits["before", "fp32"].argmax(1) == logits["after", "fp32"].argmax(1)).mean()
    return (
        f"# logits on 2048 random inputs, before vs after: int8 {'identical' if int8_same else 'DIFFERENT'}; "
        f"fp32 max |difference| {fp32_gap:.1e}, top-1 the same for {100 * fp32_top1:.2f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="src folder of the earlier checkout")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    after = Path(__file__).resolve().parents[1] / "src"
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0].split()
    simd = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if flag in flags]
    print("# fp32 ONNX vs its int8 child in ONNX Runtime, before and after one deployment form for both")
    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())} | {cpu_name()} | SIMD: {' '.join(simd)} | "
        f"{os.cpu_count()} CPUs | onnxruntime {ort.__version__} | Python {platform.python_version()}"
    )
    print(f"# command: python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}")
    print(
        f"# before: {args.before}; after: {after}. {args.rounds} interleaved rounds after {args.warmup} "
        f"warm-up calls, {CALLS_PER_ROUND[1]} (b1) / {CALLS_PER_ROUND[64]} (b64) calls per round; "
        "ms: median [95% bootstrap interval]; speedups: median of per-round ratios"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for shape_name, shape in SHAPES.items():
            channels, length = shape[:2]
            files = {
                checkout: build(source, Path(tmp) / f"{checkout}-{channels}x{length}", shape, args.seed)
                for checkout, source in (("before", args.before), ("after", after))
            }
            print(f"\n## {shape_name}")
            print(logit_check(files, channels, length))
            names = {(c, p): f"{p} {c}" for c in files for p in ("fp32", "int8")}
            references = {names[c, "int8"]: names[c, "fp32"] for c in files}
            references[names["after", "fp32"]] = names["before", "fp32"]
            for batch, calls in CALLS_PER_ROUND.items():
                with pinned_threads(1):
                    runners = {
                        name: make_onnx_runner(
                            files[checkout][precision],
                            batch_size=batch,
                            n_channels=channels,
                            length=length,
                            threads=1,
                            seed=args.seed,
                        )
                        for (checkout, precision), name in names.items()
                    }
                    times = time_interleaved(
                        runners,
                        rounds=args.rounds,
                        warmup=args.warmup,
                        seed=args.seed + batch,
                        calls_per_round=calls,
                    )
                summary = summarize(times, references=references, seed=args.seed)
                int8_over_int8 = summarize(
                    times, references={names["after", "int8"]: names["before", "int8"]}, seed=args.seed
                )
                for name, entry in summary.items():
                    interval = f"[{entry['low_ms']:.4f}-{entry['high_ms']:.4f}]"
                    line = f"batch {batch:2d}  {name:12s} {entry['median_ms']:8.4f} ms {interval}"
                    if "verdict" in entry:
                        line += "  " + describe_speedup(entry)
                    if name == names["after", "int8"]:
                        line += "; " + describe_speedup(int8_over_int8[name])
                    print(line)
            print(f"# load average after timing: {' '.join(f'{value:.1f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
