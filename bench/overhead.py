"""How much of a finished run is job start-up, what a no-op snakemake costs, and which imports weigh.

Four parts:
  1. Per rule, from a finished run: jobs, the summed job wall seconds (column ``s`` of
     Snakemake's ``benchmarks/**/*.tsv``), the summed seconds spent inside the stage functions
     (the last ``prunequant-stage-seconds: X`` line of each job's log under ``logs/``, same
     relative path) and the start-up share, 1 - stage / job: interpreter, imports, CUDA init,
     Snakemake's script wrapper. Target: at most 25% of the summed job time.
  2. ``snakemake --version`` against a no-op ``snakemake -n`` in that finished project,
     interleaved (shuffled order per round); target: at most 1.3x. A dry run of one finished job
     in the same rounds splits the gap into reading the workflow and checking every job, and two
     workflows of Snakemake alone give its floor: an empty one, and a skeleton of the project's
     DAG (its jobs and dependencies, as many outputs a job) with no params, logs or code.
     The ratios are also given in CPU time (user + system), which a busy host's stolen
     cycles do not inflate.
  3. The import time of every library module the workflow scripts import, each in a fresh
     interpreter (``python -X importtime``), and the heaviest packages below them: what to
     make lazy.
  4. What a torch job's exit costs: a miniature job process (imports, 20 training steps)
     with Python's final garbage collection, and with job_logging's gc.freeze() at exit.

    python bench/overhead.py RUN_DIR [--snakefile PATH] > bench/results/overhead.txt
    python bench/overhead.py RUN_DIR --parts 2 --rounds 40     # the no-op alone, more rounds
"""

import argparse
import ast
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from summarize_benchmarks import ORDER, logged_value, rule_of  # bench/ is on sys.path: it holds this script

ROOT = Path(__file__).resolve().parents[1]
IMPORTTIME_LINE = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|( *)(\S+)\s*$")


def job_table(run_dir: Path) -> pd.DataFrame:
    """One row per job: rule, benchmark file, job seconds, stage seconds (NaN if not logged)."""
    rows = []
    benchmarks = run_dir / "benchmarks"
    for path in sorted(benchmarks.rglob("*.tsv")):
        relative = path.relative_to(benchmarks)
        job_seconds = pd.read_csv(path, sep="\t")["s"].sum()  # one row, or one per --benchmark-repeats
        stage = logged_value((run_dir / "logs" / relative).with_suffix(".log"), "prunequant-stage-seconds:")
        rows.append(
            {
                "rule": rule_of(relative),
                "job": str(relative.with_suffix("")),
                "job_s": float(job_seconds),
                "stage_s": np.nan if stage is None else stage,
            }
        )
    if not rows:
        raise SystemExit(f"{benchmarks}: no benchmark files; give the folder of a finished run")
    return pd.DataFrame(rows)


def startup_report(jobs: pd.DataFrame) -> list[str]:
    timed = jobs.dropna(subset=["stage_s"])
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"), job_s=("job_s", "sum"), logged=("stage_s", "count")
    )
    table["stage_s"] = timed.groupby("rule")["stage_s"].sum()
    timed_job_s = timed.groupby("rule")["job_s"].sum()
    table["startup_s"] = timed_job_s - table["stage_s"]
    table["startup_share"] = table["startup_s"] / timed_job_s
    table = table.reindex([r for r in ORDER if r in table.index] + [r for r in table.index if r not in ORDER])
    lines = [table.round(2).to_string()]
    if timed.empty:
        lines.append("\nno job log has a 'prunequant-stage-seconds:' line: start-up share not measurable")
        return lines
    share = 1 - timed.stage_s.sum() / timed.job_s.sum()
    startup = timed.job_s.sum() - timed.stage_s.sum()
    lines.append(
        f"\ntotal: {len(jobs)} jobs, {jobs.job_s.sum():.1f} s of job time; the {len(timed)} jobs that log "
        f"their stage time: {timed.job_s.sum():.1f} s, of which start-up {startup:.1f} s = {share:.0%} "
        "(target <= 25%)"
    )
    return lines


# The timed commands run with Python's default of caching compiled modules in __pycache__, as on
# a user's machine. A machine that sets PYTHONDONTWRITEBYTECODE (the one measured here does) never
# caches the workflow's own modules, since they are imported from src/ rather than installed, and
# recompiles them in every `snakemake` call: about 20 ms of a no-op there.
USER_PYTHON = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def snakemake_command(run_dir: Path, snakefile: Path | None, *args: str) -> list[str]:
    command = [sys.executable, "-m", "snakemake", *args]
    if snakefile is not None:
        command += ["--snakefile", str(snakefile), "--directory", str(run_dir)]
    return command


def _ms_with_interval(entry: dict) -> str:
    return f"{entry['median_ms']:7.0f} ms [{entry['low_ms']:.0f}-{entry['high_ms']:.0f}]"


def time_commands(commands: dict[str, list[str]], *, cwd: Path, rounds: int, seed: int) -> tuple[dict, dict]:
    """Wall ms and CPU ms of each command per round; every command once per round, shuffled.

    CPU ms is user + system time of the command's processes and their children: the work done,
    which a busy host's stolen cycles do not inflate the way they inflate wall time.
    """
    rng = np.random.default_rng(seed)
    names = list(commands)
    times = {name: np.empty(rounds) for name in names}
    cpu_times = {name: np.empty(rounds) for name in names}
    for round_index in range(rounds):
        for position in rng.permutation(len(names)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                commands[names[position]], cwd=cwd, env=USER_PYTHON, capture_output=True, check=True
            )
            times[names[position]][round_index] = (time.perf_counter() - started) * 1000.0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            cpu_times[names[position]][round_index] = used * 1000.0
    return times, cpu_times


# A torch job in miniature: the training library's imports, one short training, its log.
TORCH_JOB = """
import atexit, sys, torch
import prunequant.workflow.jobs
from prunequant.model import BlockSpec, ModelSpec, build_model
with prunequant.workflow.jobs.job_logging(sys.argv[1], threads=1):
    torch.manual_seed(0)
    model = build_model(ModelSpec(20, 10, (BlockSpec(25, 2, 140),)))
    optimizer = torch.optim.Adam(model.parameters())
    for _ in range(20):
        loss = model(torch.randn(32, 20, 101)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
if sys.argv[2] == "collect":
    atexit.unregister(prunequant.workflow.jobs._skip_final_garbage_collection)
"""


def exit_report(rounds: int, seed: int) -> list[str]:
    """A torch job process with and without job_logging's skip of the final garbage collection."""
    from prunequant.latency import summarize

    with tempfile.TemporaryDirectory() as tmp:
        log = str(Path(tmp) / "job.log")
        commands = {
            f"{mode} at exit": [sys.executable, "-c", TORCH_JOB, log, mode] for mode in ("collect", "freeze")
        }
        times, _ = time_commands(commands, cwd=ROOT, rounds=rounds, seed=seed)
    summary = summarize(times, references={"freeze at exit": "collect at exit"}, seed=seed)
    frozen = summary["freeze at exit"]
    return [
        *(f"{name:26s} {_ms_with_interval(summary[name])}" for name in commands),
        f"process wall time, collect / freeze: {frozen['speedup']:.2f}x "
        f"[{frozen['speedup_low']:.2f}-{frozen['speedup_high']:.2f}]",
    ]


DAG_NODE = re.compile(r"^\s*(\d+)\[label", re.MULTILINE)
DAG_EDGE = re.compile(r"^\s*(\d+) -> (\d+)", re.MULTILINE)


def project_dependencies(run_dir: Path, snakefile: Path | None) -> dict[int, list[int]]:
    """Job → the jobs it reads from, for every job of the project (``snakemake --dag``; 0 is the target)."""
    dot = subprocess.run(
        snakemake_command(run_dir, snakefile, "--dag", "--forceall", "--quiet"),
        cwd=run_dir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    jobs = {int(number) for number in DAG_NODE.findall(dot)}
    dependencies = {job: [] for job in jobs}
    for producer, consumer in DAG_EDGE.findall(dot):
        dependencies[int(consumer)].append(int(producer))
    return dependencies


def snakemake_only_workflows(
    directory: Path, dependencies: dict[int, list[int]], outputs_per_job: int
) -> dict[str, Path]:
    """Two finished workflows of Snakemake alone, as references for the no-op's floor.

    EMPTY: one rule, its one output present: what planning any workflow costs over ``--version``.
    SKELETON: the project's DAG with nothing of the project's own: one wildcard rule whose jobs
    have the project's dependencies (one file per edge) and ``outputs_per_job`` outputs each, no
    param, log, environment or code: what checking that DAG costs Snakemake itself.
    """
    workflows = {"EMPTY": directory / "empty", "SKELETON": directory / "skeleton"}
    outputs = ", ".join(f'"out/{{n}}/{index}"' for index in range(outputs_per_job))
    texts = {
        "EMPTY": 'rule all:\n    output: "done"\n    shell: "touch {output}"\n',
        "SKELETON": (
            f"DEPENDENCIES = {dependencies!r}\n"
            "rule all:\n    input: [f'out/{job}/0' for job in DEPENDENCIES[0]]\n"
            "rule make:\n"
            "    input: lambda w: [f'out/{job}/0' for job in DEPENDENCIES[int(w.n)]]\n"
            f"    output: {outputs}\n"
            "    shell: 'touch {output}'\n"
        ),
    }
    for name, folder in workflows.items():
        folder.mkdir()
        (folder / "Snakefile").write_text(texts[name])
        subprocess.run(
            snakemake_command(folder, None, "--cores", "1", "--quiet"),
            cwd=folder,
            check=True,
            capture_output=True,
        )
    return workflows


def noop_report(run_dir: Path, snakefile: Path | None, rounds: int, seed: int) -> list[str]:
    """``snakemake --version`` vs ``snakemake -n`` in the finished project, interleaved.

    A third command plans one finished job (the first dataset file): it parses the same Snakefile
    and runs the same checks of the configuration, so what it adds to ``--version`` is the cost of
    reading the workflow, and what ``-n`` adds to it is the cost of checking every job. Two
    workflows of Snakemake alone, timed in the same rounds, give the floor: planning an empty
    workflow, and checking a skeleton of the project's finished DAG.
    """
    from prunequant.latency import summarize

    one_job = next(iter(sorted(run_dir.glob("results/data/*/dataset.npz"))), None)
    commands = {
        "snakemake --version": snakemake_command(run_dir, None, "--version"),
        "snakemake -n": snakemake_command(run_dir, snakefile, "-n", "--cores", "1", "--quiet"),
    }
    if one_job is not None:
        target = str(one_job.relative_to(run_dir))
        commands["snakemake -n ONE_JOB"] = snakemake_command(
            run_dir, snakefile, "-n", "--cores", "1", "--quiet", "all", "--", target
        )
    for name in [name for name in commands if name != "snakemake --version"]:
        # Also the untimed warm-up that leaves the compiled modules cached for the timed rounds.
        dry_run = subprocess.run(commands[name], cwd=run_dir, env=USER_PYTHON, capture_output=True, text=True)
        if dry_run.returncode != 0 or "Nothing to be done" not in dry_run.stdout + dry_run.stderr:
            tail = (dry_run.stdout + dry_run.stderr).strip().splitlines()[-3:]
            return [f"{name}: not a no-op here (exit {dry_run.returncode}): {' | '.join(tail)}"]
    # The project's shape: its DAG, and a metadata record per declared output.
    dependencies = project_dependencies(run_dir, snakefile)
    n_jobs = len(dependencies) - 1  # without the target rule, which declares no output
    n_outputs = len(list((run_dir / ".snakemake" / "metadata").iterdir()))
    outputs_per_job = max(1, round(n_outputs / max(n_jobs, 1)))
    n_edges = sum(len(needs) for needs in dependencies.values())
    with tempfile.TemporaryDirectory() as tmp:
        references = snakemake_only_workflows(Path(tmp), dependencies, outputs_per_job)
        commands |= {
            f"snakemake -n {name}": snakemake_command(
                folder, folder / "Snakefile", "-n", "--cores", "1", "--quiet"
            )
            for name, folder in references.items()
        }
        times, cpu_times = time_commands(commands, cwd=run_dir, rounds=rounds, seed=seed)
    described = {
        "ONE_JOB": f"ONE_JOB = {target}" if one_job is not None else "",
        "EMPTY": "Snakemake alone: one finished rule",
        "SKELETON": f"Snakemake alone, this DAG: {n_jobs} jobs x {outputs_per_job} outputs, {n_edges} edges",
    }
    # "speedup" of --version over a dry run is the cost ratio dry run / --version, per round.
    summary = summarize(times, references={"snakemake --version": "snakemake -n"}, seed=seed)
    version = summary["snakemake --version"]
    lines = [
        f"snakemake --version       {_ms_with_interval(version)}",
        f"snakemake -n              {_ms_with_interval(summary['snakemake -n'])}",
    ]
    for name, text in described.items():
        command = f"snakemake -n {name}"
        if command not in commands:
            continue
        other = summarize(times, references={"snakemake --version": command}, seed=seed)
        lines.append(
            f"{command:25s} {_ms_with_interval(other[command])}"
            f"  ({other['snakemake --version']['speedup']:.2f}x --version; {text})"
        )
    lines.append(
        f"no-op cost ratio (-n / --version, per-round median): {version['speedup']:.2f}x "
        f"[{version['speedup_low']:.2f}-{version['speedup_high']:.2f}] (target <= 1.3x)"
    )
    # The same ratios in CPU time: what each command computes, whatever the host lends it.
    for command in ("snakemake -n", "snakemake -n SKELETON"):
        if command in cpu_times:
            ratio = summarize(cpu_times, references={"snakemake --version": command}, seed=seed)
            entry = ratio["snakemake --version"]
            lines.append(
                f"{command} / --version in CPU time (user + system, per-round median): "
                f"{entry['speedup']:.2f}x [{entry['speedup_low']:.2f}-{entry['speedup_high']:.2f}] "
                f"({ratio[command]['median_ms']:.0f} against {entry['median_ms']:.0f} ms)"
            )
    return lines


SMK_IMPORT = re.compile(r"^\s*(?:from|import)\s+(prunequant[\w.]*)", re.MULTILINE)


def script_imports() -> dict[str, list[str]]:
    """Library module → the workflow scripts (and "Snakefile": every snakemake call) importing it."""
    users = defaultdict(list)
    # Rule files are not plain Python, so a regex finds their imports; every snakemake run pays them.
    for workflow_file in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        for module in SMK_IMPORT.findall(workflow_file.read_text()):
            if "Snakefile" not in users[module]:
                users[module].append("Snakefile")
    for script in sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith("prunequant") and script.stem not in users[module]:
                    users[module].append(script.stem)
    return dict(sorted(users.items()))


def import_times(module: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` entries (self µs, cumulative µs, depth, name) of importing ``module`` afresh."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    entries = []
    for line in result.stderr.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            entries.append((int(self_us), int(cumulative_us), len(indent) // 2, name))
    return entries


def import_report(rounds: int) -> list[str]:
    """Median cumulative import time per library module; heaviest third-party packages overall."""
    users = script_imports()
    module_times = defaultdict(list)
    package_times = defaultdict(list)
    for _ in range(rounds):
        for module in users:  # a fresh interpreter each: nothing is cached between modules
            entries = import_times(module)
            module_times[module].append(next(c for _, c, _, n in reversed(entries) if n == module) / 1e6)
            for _, cumulative, _, name in entries:
                # Top-level third-party packages above 20 ms; each is imported once per process.
                if "." not in name and name != "prunequant" and cumulative > 20_000:
                    package_times[(module, name)].append(cumulative / 1e6)
    baseline = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True
    )
    startup_us = sum(int(m.group(1)) for m in map(IMPORTTIME_LINE.match, baseline.stderr.splitlines()) if m)
    lines = [
        f"interpreter start-up imports alone: {startup_us / 1e3:.0f} ms (site, encodings)",
        f"{'library module':34s} {'import s':>9s}  imported by scripts",
    ]
    for module in sorted(module_times, key=lambda m: -np.median(module_times[m])):
        lines.append(f"{module:34s} {np.median(module_times[module]):9.2f}  {', '.join(users[module])}")
    heaviest = defaultdict(float)
    for (_module, package), values in package_times.items():
        heaviest[package] = max(heaviest[package], float(np.median(values)))
    lines.append(
        "\nheaviest packages, cumulative import seconds (median; the largest over the modules above):"
    )
    for package, seconds in sorted(heaviest.items(), key=lambda item: -item[1])[:15]:
        importers = sorted({module for (module, name) in package_times if name == package})
        more = " ..." if len(importers) > 4 else ""
        lines.append(f"  {package:24s} {seconds:6.2f}  via {', '.join(importers[:4])}{more}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="folder of a finished run (holds benchmarks/ and logs/)")
    parser.add_argument("--snakefile", type=Path, help="when the Snakefile is not in RUN_DIR")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the snakemake timing")
    parser.add_argument("--import-rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parts",
        type=int,
        nargs="+",
        choices=(1, 2, 3, 4),
        default=[1, 2, 3, 4],
        help="which of the four parts to run (default: all)",
    )
    args = parser.parse_args()
    from prunequant.latency import cpu_name

    run_dir = args.run_dir.resolve()
    snakefile = args.snakefile.resolve() if args.snakefile else None
    print("# Per-job overhead: start-up share of a finished run, no-op snakemake, import costs")
    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())} | {cpu_name()} | {os.cpu_count()} CPUs | "
        f"load average {os.getloadavg()[0]:.1f} | Python {platform.python_version()}"
    )
    print(f"# command: python bench/overhead.py {' '.join(sys.argv[1:])}")
    print("# intervals: 95% bootstrap interval of the median")
    print(
        "# snakemake commands: Python's default bytecode cache"
        + (
            " (PYTHONDONTWRITEBYTECODE, set here, removed from their environment)"
            if "PYTHONDONTWRITEBYTECODE" in os.environ
            else ""
        )
    )
    parts = {
        1: (
            f"1. start-up share per rule ({run_dir.name}; seconds summed over jobs)",
            lambda: startup_report(job_table(run_dir)),
        ),
        2: (
            f"2. no-op snakemake, {args.rounds} interleaved rounds (ms, median)",
            lambda: noop_report(run_dir, snakefile, args.rounds, args.seed),
        ),
        3: (
            f"3. import time of each library module a script imports "
            f"({args.import_rounds} rounds, fresh interpreter each)",
            lambda: import_report(args.import_rounds),
        ),
        4: (
            f"4. a torch job's process (imports, 20 training steps, exit), {args.rounds} interleaved "
            "rounds (ms, median): Python's final garbage collection vs gc.freeze() at exit",
            lambda: exit_report(args.rounds, args.seed),
        ),
    }
    for number in sorted(set(args.parts)):
        title, report = parts[number]
        print(f"## {title}")
        print("\n".join(report()) + "\n")


if __name__ == "__main__":
    main()
