"""A finished project can be copied or moved and stays finished; the workflow runs from any directory."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_slurm import make_smallest_project, smallest_config
from workflow_support import ROOT, SNAKEMAKE, snakemake, write_config

NOTHING_TO_DO = "Nothing to be done"


def dry_run(workdir: Path, snakefile: Path | None = None) -> str:
    """The output of a dry run in ``workdir``, of its own workflow copy unless ``snakefile`` is given."""
    snakefile = snakefile or workdir / "workflow" / "Snakefile"
    command = [*SNAKEMAKE, "--snakefile", str(snakefile), "--directory", str(workdir), "-n", "--cores", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def planned_total(output: str) -> int:
    return int(re.search(r"^total\s+(\d+)$", output, flags=re.M).group(1))


@pytest.fixture(scope="module")
def finished_project(tmp_path_factory):
    """A tiny project run to the end; its data folder is named relative to the project."""
    workdir = tmp_path_factory.mktemp("relocate") / "project"
    make_smallest_project(workdir)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    # A project that moves must not name its own files by absolute path.
    config["data"]["audio"]["root"] = "audio"
    write_config(workdir, config)
    result = snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert NOTHING_TO_DO in dry_run(workdir)
    # The code digests' record, which the moved copies below cannot use (it names the old paths).
    assert (workdir / ".prunequant-cache" / "code-digests.json").is_file()
    return workdir


def test_a_copied_or_moved_project_has_nothing_to_do(finished_project):
    copy = finished_project.parent / "copy"
    shutil.copytree(finished_project, copy, symlinks=True)
    # Moving the original away also proves that the copy does not lean on it.
    moved = finished_project.parent / "moved"
    finished_project.rename(moved)
    for relocated in (copy, moved):
        output = dry_run(relocated)
        assert NOTHING_TO_DO in output, f"{relocated.name}: {output[-3000:]}"


def changed_keys(original: dict, changed: dict) -> dict:
    """The part of ``changed`` that differs from ``original``, as a partial config."""
    partial = {}
    for key, value in changed.items():
        if isinstance(value, dict) and isinstance(original.get(key), dict):
            if difference := changed_keys(original[key], value):
                partial[key] = difference
        elif value != original.get(key):
            partial[key] = value
    return partial


def test_the_default_config_beside_the_snakefile_is_loaded_from_any_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    snakefile = ROOT / "Snakefile"
    defaults = ROOT / "config.yaml"
    output = dry_run(elsewhere, snakefile=snakefile)
    assert str(defaults) in re.search(r"Config file\(s\):.*", output).group(0)
    default_total = planned_total(output)

    # A working-directory config.yaml is merged over the defaults: a partial one is enough.
    default_config = yaml.safe_load(defaults.read_text())
    partial = changed_keys(default_config, smallest_config(default_config))
    assert partial, "smallest_config changes nothing in the defaults"
    (elsewhere / "config.yaml").write_text(yaml.safe_dump(partial))
    output = dry_run(elsewhere, snakefile=snakefile)
    assert "'config.yaml'" in re.search(r"Config file\(s\):.*", output).group(0)
    assert 0 < planned_total(output) < default_total, f"{partial} did not shrink the plan"
