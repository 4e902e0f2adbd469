"""CPU latency of one trained model in every form the workflow produces, against its baselines.

Each form is timed in its own process (torch and ONNX Runtime thread pools disturb each
other), in interleaved rounds; the table gives the median over rounds of each round's
median. Run after the pipeline:

    python bench/latency.py results/train_baseline/model.pt results/export_onnx/baseline/model.onnx \
        results/quantize/baseline/model.onnx --length 100 > bench/results/latency-cpu.txt
"""

import argparse
import json
import statistics
import subprocess
import sys

FORMS = {
    "fp32 torch, as trained": ("torch", "checkpoint"),
    "fp32 torch, deployment form (BN folded, last pool cropped)": ("torch-deployed", "checkpoint"),
    "fp32 ONNX Runtime": ("onnxruntime", "fp32"),
    "int8 ONNX Runtime": ("onnxruntime", "int8"),
}

CHILD = """
import json, sys
from prunequant.checkpoint import load_model
from prunequant.measure import make_onnx_runner, make_torch_runner, measure_latency
from prunequant.quantize import deployment_model
kind, path, batch, channels, length, threads, repeats = sys.argv[1:]
shape = dict(batch_size=int(batch), n_channels=int(channels), length=int(length), threads=int(threads))
if kind == "onnxruntime":
    run = make_onnx_runner(path, **shape)
else:
    model = load_model(path)[0]
    run = make_torch_runner(deployment_model(model) if kind == "torch-deployed" else model, **shape)
print(json.dumps(measure_latency(run, warmup=50, repeats=int(repeats))["median_ms"]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint")
    parser.add_argument("fp32_onnx")
    parser.add_argument("int8_onnx")
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from prunequant.checkpoint import load_model

    channels = load_model(args.checkpoint)[0].blocks[0].depthwise.in_channels
    paths = {"checkpoint": args.checkpoint, "fp32": args.fp32_onnx, "int8": args.int8_onnx}
    results = {(form, batch): [] for form in FORMS for batch in (1, 64)}
    for _ in range(args.rounds):
        for form, (kind, artifact) in FORMS.items():
            for batch in (1, 64):
                command = [
                    sys.executable,
                    "-c",
                    CHILD,
                    kind,
                    paths[artifact],
                    str(batch),
                    str(channels),
                    str(args.length),
                    str(args.threads),
                    str(args.repeats),
                ]
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                results[(form, batch)].append(json.loads(output.strip().splitlines()[-1]))
    reference = {batch: statistics.median(results[("fp32 torch, as trained", batch)]) for batch in (1, 64)}
    onnx_fp32 = {batch: statistics.median(results[("fp32 ONNX Runtime", batch)]) for batch in (1, 64)}
    print(
        f"# {args.checkpoint}, T={args.length}, {args.threads} thread(s), "
        f"median of {args.rounds} interleaved rounds x {args.repeats} calls"
    )
    print(f"{'form':62s} {'b1 ms':>8s} {'b64 ms':>8s} {'b64 vs torch':>13s} {'b64 vs ORT fp32':>16s}")
    for form in FORMS:
        b1, b64 = (statistics.median(results[(form, batch)]) for batch in (1, 64))
        print(f"{form:62s} {b1:8.3f} {b64:8.3f} {reference[64] / b64:12.2f}x {onnx_fp32[64] / b64:15.2f}x")


if __name__ == "__main__":
    main()
