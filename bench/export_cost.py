"""Cost of exporting one model to ONNX, by each exporter path torch offers, and whether they agree.

Paths compared (all with a dynamic batch dimension, opset 18, the deployment-form model):
  dynamo           torch.onnx.export(dynamo=True): what prunequant.quantize.export uses
  dynamo-noopt     the same with optimize=False (skips onnxscript's graph optimizer)
  torchscript      torch.onnx.export(dynamo=False): the legacy TorchScript tracer (deprecated)
  torch.export     torch.export.export alone: no ONNX at all, the floor of any dynamo path

Two costs, both interleaved (every path once per round, order shuffled per round):
  cold  one fresh interpreter per export, as a workflow job pays it: imports + first export
  warm  repeated exports in one process (prunequant.latency.time_interleaved)
Then, per path, the ops of the graph, the largest output difference against the torch model
and against the current exporter, and whether two exports give identical bytes.

    python bench/export_cost.py > bench/results/export-cost.txt
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATHS = ("dynamo", "dynamo-noopt", "torchscript", "torch.export")
REFERENCE = "dynamo"
# The default config's data (JapaneseVowels: 12 channels, 9 classes, length 100) and the
# seed architecture, unpruned and at a 50% and 90% pruning rate.
N_CHANNELS, N_CLASSES, LENGTH = 12, 9, 100
WIDTHS = {"baseline": 140, "rate0.5": 70, "rate0.9": 14}

CHILD = """
import json, sys, time
started = time.perf_counter()
sys.path.insert(0, {bench!r})
import export_cost
model = export_cost.deployed_model(int(sys.argv[2]))
imported = time.perf_counter()
export_cost.export(sys.argv[1], model, sys.argv[3])
finished = time.perf_counter()
print(json.dumps({{"import_s": imported - started, "export_s": finished - imported}}))
"""


def deployed_model(width: int):
    """The seed architecture with ``width`` pointwise channels, in deployment form, seeded."""
    import torch

    from prunequant.model import BlockSpec, ModelSpec, build_model
    from prunequant.quantize import deployment_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(N_CHANNELS, N_CLASSES, (BlockSpec(25, 2, width),)))
    for module in model.modules():  # BatchNorm statistics as after training, so folding matters
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return deployment_model(model).eval()


def export(path_name: str, model, target: str) -> None:
    """Export ``model`` to ``target`` by one of PATHS."""
    import torch

    from prunequant.quantize.export import DEFAULT_OPSET, quiet

    example = (torch.zeros(2, N_CHANNELS, LENGTH),)
    names = {"input_names": ["input"], "output_names": ["logits"], "opset_version": DEFAULT_OPSET}
    dynamic_shapes = ({0: torch.export.Dim("batch")},)
    with quiet():
        if path_name in ("dynamo", "dynamo-noopt"):
            torch.onnx.export(
                model,
                example,
                target,
                dynamo=True,
                optimize=path_name == "dynamo",
                dynamic_shapes=dynamic_shapes,
                external_data=False,
                **names,
            )
        elif path_name == "torchscript":
            dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
            torch.onnx.export(model, example, target, dynamo=False, dynamic_axes=dynamic_axes, **names)
        elif path_name == "torch.export":
            torch.export.export(model, example, dynamic_shapes=dynamic_shapes)
        else:
            raise ValueError(f"unknown export path {path_name!r}; known: {PATHS}")


def cold_costs(rounds: int, seed: int, workdir: Path) -> dict:
    """Per path and model: lists of (process wall s, in-process export s), one per round."""
    rng = np.random.default_rng(seed)
    child = CHILD.format(bench=str(Path(__file__).parent))
    jobs = [(path_name, model) for path_name in PATHS for model in WIDTHS]
    costs = {job: {"process_s": [], "export_s": [], "import_s": []} for job in jobs}
    for _ in range(rounds):
        for index in rng.permutation(len(jobs)):
            path_name, model = jobs[index]
            target = workdir / f"cold-{path_name}-{model}.onnx"
            started = time.perf_counter()
            output = subprocess.run(
                [sys.executable, "-c", child, path_name, str(WIDTHS[model]), str(target)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            costs[jobs[index]]["process_s"].append(time.perf_counter() - started)
            child_times = json.loads(output.strip().splitlines()[-1])
            costs[jobs[index]]["export_s"].append(child_times["export_s"])
            costs[jobs[index]]["import_s"].append(child_times["import_s"])
            print(f"cold {path_name} {model}: {costs[jobs[index]]['process_s'][-1]:.1f} s", file=sys.stderr)
    return costs


def warm_costs(rounds: int, seed: int, workdir: Path) -> dict:
    from prunequant.latency import summarize, time_interleaved

    results = {}
    for model_name, width in WIDTHS.items():
        model = deployed_model(width)
        runners = {
            path_name: (lambda p=path_name, m=model: export(p, m, str(workdir / f"warm-{p}.onnx")))
            for path_name in PATHS
        }
        times = time_interleaved(runners, rounds=rounds, warmup=1, seed=seed)
        references = {name: REFERENCE for name in PATHS if name != REFERENCE}
        results[model_name] = summarize(times, references=references, seed=seed)
    return results


def agreement(workdir: Path) -> dict:
    """Per ONNX path and model: ops, max |diff| vs torch and vs the reference path, same bytes twice."""
    import onnx
    import onnxruntime as ort
    import torch

    from prunequant.quantize.export import strip_debug_metadata

    batch = np.random.default_rng(0).standard_normal((64, N_CHANNELS, LENGTH), dtype=np.float32)
    rows = {}
    for model_name, width in WIDTHS.items():
        model = deployed_model(width)
        with torch.inference_mode():
            expected = model(torch.from_numpy(batch)).numpy()
        outputs = {}
        for path_name in (p for p in PATHS if p != "torch.export"):
            files = [workdir / f"check-{path_name}-{model_name}-{i}.onnx" for i in range(2)]
            for file in files:
                export(path_name, model, str(file))
                strip_debug_metadata(file)
            session = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
            outputs[path_name] = session.run(None, {"input": batch})[0]
            single = session.run(None, {"input": batch[:1]})[0]
            rows[(path_name, model_name)] = {
                "ops": " ".join(node.op_type for node in onnx.load(str(files[0])).graph.node),
                "max_abs_diff_torch": float(np.abs(outputs[path_name] - expected).max()),
                "batch1_ok": single.shape == (1, N_CLASSES),
                "same_bytes": files[0].read_bytes() == files[1].read_bytes(),
                "file_bytes": files[0].stat().st_size,
            }
        for path_name in outputs:
            diff = float(np.abs(outputs[path_name] - outputs[REFERENCE]).max())
            rows[(path_name, model_name)]["max_abs_diff_reference"] = diff
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--warm-rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    from prunequant.latency import cpu_name, describe_speedup, summarize

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cold = cold_costs(args.cold_rounds, args.seed, workdir)
        warm = warm_costs(args.warm_rounds, args.seed, workdir)
        checks = agreement(workdir)

    print("# ONNX export cost per model, by exporter path")
    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())} | {cpu_name()} | {os.cpu_count()}"
        f" CPUs | load average {os.getloadavg()[0]:.1f} | Python {platform.python_version()}"
        f" | torch {torch.__version__}"
    )
    print(
        f"# command: python bench/export_cost.py --cold-rounds {args.cold_rounds} "
        f"--warm-rounds {args.warm_rounds}"
    )
    print(f"# models: seed architecture, {N_CHANNELS} channels x {LENGTH} steps, widths {WIDTHS}")
    print("# intervals: 95% bootstrap interval of the median; speedups from per-round ratios vs 'dynamo'\n")

    print(
        f"## cold: one fresh interpreter per export, {args.cold_rounds} interleaved rounds (seconds, median)"
    )
    print(
        f"{'path':14s} {'model':9s} {'process s':>10s} {'imports s':>10s} {'export s':>9s}  "
        "process time: speedup vs dynamo"
    )
    for (path_name, model_name), costs in cold.items():
        process = np.array(costs["process_s"])
        reference = np.array(cold[(REFERENCE, model_name)]["process_s"])
        line = (
            f"{path_name:14s} {model_name:9s} {np.median(process):10.2f} {np.median(costs['import_s']):10.2f}"
            f" {np.median(costs['export_s']):9.2f}"
        )
        if path_name != REFERENCE:
            # Cold runs are not paired within a round as tightly as warm ones; still one round each.
            entry = summarize({"ref": reference, "var": process}, references={"var": "ref"})["var"]
            line += "  " + describe_speedup(dict(entry, reference="dynamo"))
        print(line)

    print(f"\n## warm: exports repeated in one process, {args.warm_rounds} interleaved rounds (ms)")
    for model_name, summary in warm.items():
        for path_name, entry in summary.items():
            line = (
                f"{path_name:14s} {model_name:9s} {entry['median_ms']:9.0f} ms "
                f"[{entry['low_ms']:.0f}-{entry['high_ms']:.0f}]"
            )
            if "verdict" in entry:
                line += "  " + describe_speedup(entry)
            print(line)

    print("\n## agreement (batch 64 random input; bytes after strip_debug_metadata)")
    for (path_name, model_name), row in checks.items():
        print(
            f"{path_name:14s} {model_name:9s} max|diff| vs torch {row['max_abs_diff_torch']:.1e}, "
            f"vs dynamo {row['max_abs_diff_reference']:.1e}; batch 1 ok: {row['batch1_ok']}; "
            f"same bytes twice: {row['same_bytes']}; {row['file_bytes']} B"
        )
        print(f"{'':24s} ops: {row['ops']}")


if __name__ == "__main__":
    main()
