"""Wall time of a clean workflow run against the number of prune rates and against ``--cores``.

Each point is a fresh working directory (``snakemake --directory``) running this checkout's
Snakefile on the default config with one override file: the l1/layer/one-shot method gets N
rates (0.5 always among them, the quantized model), and ``--cores`` is set per point. Points
run in a shuffled order, so a change in the machine's load does not line up with one axis.
One seed keeps the whole sweep near half an hour on 2 vCPUs; the default study runs three
seeds, and its wall time scales with them (the runs share no job but the data preparation).

    python bench/scaling.py [--seeds 0] [--repeats 1] > bench/results/scaling.txt
"""

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from prunequant.workflow.warmstart import start_server

ROOT = Path(__file__).resolve().parents[1]
RATE_COUNTS = (1, 3, 6, 12)
CORES = (1, 2, 4)
# The rate sweep runs at the cores of the machine; the cores sweep at the default rate count.
SWEEP_CORES = 2
DEFAULT_RATE_COUNT = 4


def rates(count: int) -> list[float]:
    """``count`` rates from 0.05 to 0.6, 0.5 always included (it is the quantized model's rate)."""
    grid = [round(float(rate), 3) for rate in np.linspace(0.05, 0.6, count + 1) if abs(rate - 0.5) > 1e-9]
    return sorted([*grid[: count - 1], 0.5])


def override(seeds: list[int], rate_count: int) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    structured = config["prune"]["structured"]
    first = structured[0]
    assert (first["criterion"], first["scope"], first["schedule"]) == ("l1", "layer", "oneshot")
    first["rates"] = rates(rate_count)
    return {"seeds": seeds, "prune": {"structured": structured}}


def run_point(seeds: list[int], rate_count: int, cores: int, workdir: Path) -> tuple[float, int]:
    """Seconds of one clean run and the number of jobs it ran."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(override(seeds, rate_count)))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--cores", str(cores), "--resources", "gpu=1", "--quiet", "rules",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    jobs = len(list((workdir / "benchmarks").rglob("*.tsv")))
    return seconds, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--order-seed", type=int, default=0)
    args = parser.parse_args()

    points = [("rates", count, SWEEP_CORES) for count in RATE_COUNTS]
    points += [("cores", DEFAULT_RATE_COUNT, cores) for cores in CORES]
    points = [point for point in points for _ in range(args.repeats)]
    random.Random(args.order_seed).shuffle(points)
    print("# Clean runs of the default workflow (`snakemake --cores C --resources gpu=1`), seeds", args.seeds)
    machine = f"{os.cpu_count()} CPUs | {platform.processor() or platform.machine()}"
    print(f"# {time.strftime('%Y-%m-%d')} | {machine} | load average before {os.getloadavg()[0]:.2f}")
    print("# command: python bench/scaling.py " + " ".join(sys.argv[1:]))
    print("# order (shuffled): " + ", ".join(f"{axis}:{count}r/{cores}c" for axis, count, cores in points))
    # Started here, the warm server's preload (a few seconds, once per environment) is charged to
    # no point in particular.
    warm = "server started before the first point" if start_server() else "off"
    print(f"# warm job start: {warm}")
    results: dict[tuple[str, int, int], list[tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="prunequant-scaling-") as scratch:
        for index, (axis, count, cores) in enumerate(points):
            seconds, jobs = run_point(args.seeds, count, cores, Path(scratch) / f"point{index}")
            results.setdefault((axis, count, cores), []).append((seconds, jobs))
            print(f"# done {axis}: {count} rates, --cores {cores}: {seconds:.0f} s, {jobs} jobs,"
                  f" load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip

    def row(axis: str, count: int, cores: int, reference: tuple[int, int]) -> str:
        seconds = float(np.median([s for s, _ in results[(axis, count, cores)]]))
        jobs = results[(axis, count, cores)][0][1]
        base = float(np.median([s for s, _ in results[(axis, *reference)]]))
        return f"| {count} | {cores} | {jobs} | {seconds:.0f} | {seconds / base:.2f}× |"

    print("\n## Against the number of prune rates (l1/layer/one-shot), --cores", SWEEP_CORES)
    print("| rates | cores | jobs | wall s | vs 1 rate |\n| --- | --- | --- | --- | --- |")
    for count in RATE_COUNTS:
        print(row("rates", count, SWEEP_CORES, (RATE_COUNTS[0], SWEEP_CORES)))
    print(f"\n## Against --cores ({DEFAULT_RATE_COUNT} rates, the default)")
    print("| rates | cores | jobs | wall s | vs --cores 1 |\n| --- | --- | --- | --- | --- |")
    for cores in CORES:
        print(row("cores", DEFAULT_RATE_COUNT, cores, (DEFAULT_RATE_COUNT, CORES[0])))
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
