"""The workflow on a real SLURM cluster, through the shipped profile, gives the same results as locally.

Needs a cluster that answers `sinfo` on this machine; `.ci/slurm-up.sh` (as root) starts a
single-node one. Without one the test is skipped, unless PRUNEQUANT_REQUIRE_SLURM=1 (CI) makes
it fail. The two runs are compared on everything except timing and hardware descriptions.
"""

import csv
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from workflow_support import SNAKEMAKE, make_project, minimal_config, snakemake, write_config

# Keys (or CSV columns) whose values describe the clock or the machine, not the computation.
# Matched per underscore-separated word, so that `runtime` (torch | onnxruntime) is compared.
TIMING_WORDS = {"latency", "seconds", "time", "timing", "elapsed", "duration", "ms", "s"}
HARDWARE_WORDS = {"cpu", "gpu", "cuda", "device", "host", "hostname", "platform", "processor", "machine"}
# How long the SLURM run may go on after the local one ends (CI gives this file about 8 minutes).
SLURM_RUN_TIMEOUT_S = 480


def slurm_answers() -> bool:
    """Whether a SLURM controller answers on this machine."""
    if shutil.which("sinfo") is None:
        return False
    try:
        result = subprocess.run(["sinfo", "--noheader"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@pytest.fixture(scope="module")
def slurm_cluster():
    if slurm_answers():
        return
    reason = "no SLURM cluster answers (sinfo missing or failing); run .ci/slurm-up.sh as root to start one"
    if os.environ.get("PRUNEQUANT_REQUIRE_SLURM") == "1":
        pytest.fail(f"PRUNEQUANT_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def smallest_config(config: dict, *, one_of_each_list: bool = True) -> dict:
    """A copy of ``config`` with one epoch for every training and, optionally, one item per list.

    Keys are looked up in the config as written, not named here: every `epochs` becomes 1, and
    every list (seeds, methods, rates, recipes, ...) keeps its first item, which leaves one
    variant of each kind of work.
    """

    def shrink(value, key=None):
        if isinstance(value, dict):
            return {name: shrink(item, name) for name, item in value.items()}
        if isinstance(value, list):
            return [shrink(item) for item in (value[:1] if one_of_each_list else value)]
        if key == "epochs" and isinstance(value, int):
            return 1
        return value

    return shrink(config)


def make_smallest_project(workdir: Path) -> None:
    """A tiny project that runs every stage once: one seed, one pruned model, one recipe."""
    make_project(workdir)
    config = minimal_config(workdir / "audio")
    config["training_gpus"] = 1  # training jobs ask SLURM for the (fake) GPU, so the mapping is tested
    write_config(workdir, config)


def is_volatile(key: str) -> bool:
    """Whether a record key or column holds a timing or a hardware description."""
    words = set(key.lower().split("_"))
    return bool(words & (TIMING_WORDS | HARDWARE_WORDS))


def stable(value):
    """A JSON record without its timing and hardware keys, at every level."""
    if isinstance(value, dict):
        return {key: stable(item) for key, item in value.items() if not is_volatile(key)}
    if isinstance(value, list):
        return [stable(item) for item in value]
    return value


def stable_rows(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return [
            {key: value for key, value in row.items() if not is_volatile(key)} for row in csv.DictReader(file)
        ]


def result_files(workdir: Path) -> list[Path]:
    results = workdir / "results"
    return sorted(
        path.relative_to(results)
        for pattern in ("**/metrics.json", "**/predictions.csv")
        for path in results.glob(pattern)
    )


def planned_jobs_and_gpu_rules(workdir: Path) -> tuple[Counter, set[str]]:
    """From one dry run: the jobs per rule, and the rules whose jobs declare a gpu."""
    result = snakemake(workdir, "-n", "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[1].split("\n\n")[0]
    planned = Counter({rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)})
    del planned["total"], planned["all"]  # the target rule runs inside Snakemake, never as a job
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\[|^Job stats|\Z)", result.stdout, flags=re.M | re.S)
    gpu_rules = {rule for rule, body in jobs if re.search(r"^\s+resources:.*\bgpu=[1-9]", body, flags=re.M)}
    return planned, gpu_rules


def slurm_jobs(job_ids: set[str]) -> dict[str, dict[str, str]]:
    """The controller's record of each job it still knows among ``job_ids``, as key=value fields."""
    result = subprocess.run(
        ["scontrol", "--oneliner", "show", "job"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in result.stdout.splitlines() if line.strip()]
    return {job["JobId"]: job for job in jobs if job.get("JobId") in job_ids}


def rule_of_comment(comment: str) -> str:
    """The rule name in the executor plugin's job comment, `rule_<name>[_wildcards_<...>]`."""
    return re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment).group(1)


@pytest.fixture(scope="module")
def local_and_slurm_runs(slurm_cluster, tmp_path_factory):
    """The same tiny project run once locally and once through the SLURM profile, side by side.

    SLURM jobs spend most of their time in submission and status polling, so the local run
    overlaps them instead of waiting its turn.
    """
    local = tmp_path_factory.mktemp("local")
    on_slurm = tmp_path_factory.mktemp("slurm")
    for workdir in (local, on_slurm):
        make_smallest_project(workdir)
    planned, gpu_rules = planned_jobs_and_gpu_rules(on_slurm)

    slurm_log = tmp_path_factory.mktemp("slurm_output") / "snakemake.log"
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(on_slurm / "workflow" / "Snakefile"),
        "--directory",
        str(on_slurm),
    ]
    command += ["--profile", str(on_slurm / "workflow" / "profiles" / "slurm")]
    # Successful jobs' SLURM logs are deleted by default; they prove how each job ran.
    command += ["--slurm-keep-successful-logs"]
    with slurm_log.open("w") as output:
        slurm_run = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            result = snakemake(local, "--cores", "2", "--resources", "gpu=1")
            assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
            slurm_run.wait(timeout=SLURM_RUN_TIMEOUT_S)
        finally:
            if slurm_run.poll() is None:
                slurm_run.kill()  # its jobs finish or fail on their own; none of them waits on it
    assert slurm_run.returncode == 0, slurm_log.read_text()[-5000:]
    return local, on_slurm, planned, gpu_rules


def test_every_job_went_through_sbatch(local_and_slurm_runs):
    _, on_slurm, planned, gpu_rules = local_and_slurm_runs
    # The plugin names each job's log `<rule>/<wildcards>/<SLURM job id>.log`.
    logs_dir = on_slurm / ".snakemake" / "slurm_logs"
    logs = list(logs_dir.glob("rule_*/**/*.log"))
    logged_rules = Counter(log.relative_to(logs_dir).parts[0].removeprefix("rule_") for log in logs)
    assert logged_rules == planned
    jobs = slurm_jobs({log.stem for log in logs})
    assert set(jobs) == {log.stem for log in logs}, "the controller forgot jobs: raise MinJobAge"
    assert Counter(rule_of_comment(job["Comment"]) for job in jobs.values()) == planned
    assert all(
        job["JobState"] == "COMPLETED" and Path(job["WorkDir"]).samefile(on_slurm) for job in jobs.values()
    )
    # The profile maps `resources: gpu=1` to `sbatch --gpus=1`, job by job.
    assert gpu_rules, "no rule declares a gpu resource: the mapping is not exercised"
    for job in jobs.values():
        asks_for_gpu = "gpu" in job.get("TresPerJob", "")
        assert asks_for_gpu == (rule_of_comment(job["Comment"]) in gpu_rules), job


def test_slurm_results_equal_local_results(local_and_slurm_runs):
    local, on_slurm, _, _ = local_and_slurm_runs
    files = result_files(local)
    assert any(path.name == "predictions.csv" for path in files)
    assert result_files(on_slurm) == files
    for path in files:
        local_path, slurm_path = local / "results" / path, on_slurm / "results" / path
        if path.suffix == ".json":
            expected = stable(json.loads(local_path.read_text()))
            assert stable(json.loads(slurm_path.read_text())) == expected, path
        else:
            assert stable_rows(slurm_path) == stable_rows(local_path), path


def test_the_slurm_run_writes_the_report(local_and_slurm_runs):
    _, on_slurm, _, _ = local_and_slurm_runs
    reports = list((on_slurm / "results").glob("**/report.md"))
    assert reports and all(report.stat().st_size > 0 for report in reports)


def test_volatile_keys_are_timings_and_hardware_only():
    record = {"accuracy": 50.0, "runtime": "onnxruntime", "latency_batch1_ms": 0.1, "train_seconds": 2.0}
    record |= {"cpu": "x86_64", "device": "cpu", "nested": {"epoch_time": 1.0, "loss": 0.5}}
    assert stable(record) == {"accuracy": 50.0, "runtime": "onnxruntime", "nested": {"loss": 0.5}}


def test_smallest_config_keeps_one_of_everything():
    config = {
        "seeds": [3, 1],
        "train": {"epochs": 4, "lr_step_epochs": 2},
        "methods": [{"rates": [0.5, 0.2]}, {}],
    }
    assert smallest_config(config) == {
        "seeds": [3],
        "train": {"epochs": 1, "lr_step_epochs": 2},
        "methods": [{"rates": [0.5]}],
    }
    assert smallest_config(config, one_of_each_list=False)["methods"] == config["methods"]
