"""CPU latency of one trained model in every form the workflow produces, against its baselines.

One process per runtime (torch and ONNX Runtime thread pools disturb each other in one
process); inside it, every form of that runtime is timed in the same interleaved rounds
(prunequant.latency.time_interleaved) with threads pinned. Each latency is the median over
rounds with a 95% bootstrap interval; each speedup is the median of per-round ratios against
the baseline named next to it, in the same runtime, with its interval. Run after the pipeline:

    python bench/latency.py results/train_baseline/seed0/model.pt \
        results/export_onnx/seed0/baseline/model.onnx results/quantize/seed0/baseline/minmax/model.onnx \
        --length 100 > bench/results/latency-cpu.txt
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

# Per runtime: form name -> (how it is built, artifact), and each form's baseline.
FORMS = {
    "torch": {
        "fp32 as trained": ("checkpoint", "checkpoint"),
        "fp32 deployment form (BN folded, last pool cropped)": ("deployed", "checkpoint"),
    },
    "onnxruntime": {
        "fp32 ONNX": ("onnx", "fp32"),
        "int8 ONNX": ("onnx", "int8"),
    },
}
REFERENCES = {
    "torch": {"fp32 deployment form (BN folded, last pool cropped)": "fp32 as trained"},
    "onnxruntime": {"int8 ONNX": "fp32 ONNX"},
}

CHILD = """
import json, sys
from prunequant.checkpoint import load_model
from prunequant.latency import pinned_threads, summarize, time_interleaved
from prunequant.measure import make_onnx_runner, make_torch_runner
from prunequant.quantize import deployment_model
forms, references, channels, length, threads, warmup, rounds, seed = map(json.loads, sys.argv[1:])
result = {}
with pinned_threads(threads):
    for batch in (1, 64):
        shape = dict(batch_size=batch, n_channels=channels, length=length, threads=threads, seed=seed)
        runners = {}
        for name, (kind, path) in forms.items():
            if kind == "onnx":
                runners[name] = make_onnx_runner(path, **shape)
            else:
                model = load_model(path)[0]
                model = deployment_model(model) if kind == "deployed" else model
                runners[name] = make_torch_runner(model, **shape)
        times = time_interleaved(runners, rounds=rounds, warmup=warmup, seed=seed + batch)
        result[batch] = summarize(times, references=references, seed=seed)
print(json.dumps(result))
"""


def time_runtime(runtime: str, paths: dict, args, channels: int) -> dict:
    forms = {name: (kind, paths[artifact]) for name, (kind, artifact) in FORMS[runtime].items()}
    values = (
        forms,
        REFERENCES[runtime],
        channels,
        args.length,
        args.threads,
        args.warmup,
        args.rounds,
        args.seed,
    )
    command = [sys.executable, "-c", CHILD, *map(json.dumps, values)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {int(batch): summary for batch, summary in json.loads(output.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("fp32_onnx")
    parser.add_argument("int8_onnx")
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from prunequant.checkpoint import load_model
    from prunequant.latency import cpu_name, describe_speedup

    channels = load_model(args.checkpoint)[0].blocks[0].depthwise.in_channels
    paths = {"checkpoint": args.checkpoint, "fp32": args.fp32_onnx, "int8": args.int8_onnx}
    print(f"# CPU latency of {args.checkpoint} in every form, T={args.length}")
    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())} | {cpu_name()} | {os.cpu_count()} CPUs | load average "
        f"{os.getloadavg()[0]:.1f} | {args.threads} thread(s), pinned | Python {platform.python_version()}"
    )
    print(f"# command: python bench/latency.py {' '.join(sys.argv[1:])}")
    print(
        f"# one process per runtime; {args.rounds} interleaved rounds after {args.warmup} warm-up calls; "
        "ms: median [95% bootstrap interval]; speedups from per-round ratios, within one runtime"
    )
    for runtime in FORMS:
        summaries = time_runtime(runtime, paths, args, channels)
        print(f"\n## {runtime}")
        for name in FORMS[runtime]:
            for batch, summary in summaries.items():
                entry = summary[name]
                line = (
                    f"{name:52s} batch {batch:2d} {entry['median_ms']:8.3f} ms "
                    f"[{entry['low_ms']:.3f}-{entry['high_ms']:.3f}]"
                )
                if "verdict" in entry:
                    line += "  " + describe_speedup(entry)
                print(line)


if __name__ == "__main__":
    main()
