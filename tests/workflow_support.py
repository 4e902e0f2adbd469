"""What the end-to-end tests share: a synthesized dataset, a tiny config, a copied project, a runner."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = [
    "Snakefile",
    "config.yaml",
    "rules",
    "scripts",
    "src",
    "captions",
    "config.schema.yaml",
    "envs",
    "profiles",
]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def synthesize_speech_folder(root: Path) -> None:
    """Two 'words' (tone pitches) spoken by three 'speakers' (timbres), 6 takes each."""
    rate = 8000
    t = np.arange(int(0.25 * rate)) / rate
    rng = np.random.default_rng(0)
    for label, pitch in (("low", 220.0), ("high", 660.0)):
        for speaker in range(3):
            for take in range(6):
                tone = np.sin(2 * np.pi * pitch * (1 + 0.02 * speaker) * t)
                tone += 0.3 * np.sin(2 * np.pi * 2 * pitch * t) * speaker / 2
                tone += 0.05 * rng.standard_normal(len(t))
                path = root / label / f"spk{speaker}_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(path, (0.5 * tone).astype(np.float32), rate)


def tiny_config(audio_root: Path) -> dict:
    """Every method family at the smallest settings that still exercise it: two seeds, a few epochs."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["seeds"] = [0, 1]
    config["data"].update(source="audio", length=32, val_fraction=0.25, test_fraction=0.25)
    config["data"]["audio"].update(
        root=str(audio_root),
        label_from="folder",
        group_regex=r"(spk\d)_",
        sample_rate=8000,
        n_mfcc=8,
        hop_length=80,
        n_fft=256,
    )
    config["model"]["blocks"] = [{"kernel_size": 5, "stride": 2, "width": 12}]
    config["train"].update(epochs=4, batch_size=8)
    config["finetune"].update(epochs=2, batch_size=8)
    config["prune"].update(
        structured=[
            {"criterion": "l1", "scope": "layer", "schedule": "oneshot", "rates": [0.25, 0.5]},
            {"criterion": "l1", "scope": "layer", "schedule": "oneshot", "rates": [0.5], "distill": ["kd"]},
            {"criterion": "random", "scope": "layer", "schedule": "oneshot", "rates": [0.5]},
            {"criterion": "taylor", "scope": "global", "schedule": "oneshot", "rates": [0.5]},
            {
                "criterion": "l1",
                "scope": "layer",
                "schedule": "iterative",
                "steps": 2,
                "spacing": "cubic",
                "rates": [0.5],
            },
        ],
        sensitivity={"criterion": "l1", "rates": [0.5], "max_drop_pp": [5.0]},
        unstructured={"scopes": ["layer"], "sparsities": [0.5], "distill": []},
        from_scratch={"rates": [0.5], "distill": ["kd"]},
    )
    config["quantize"]["models"] = ["baseline"]
    config["quantize"]["recipes"] = [
        {
            "name": "minmax",
            "method": "ptq",
            "calibration_method": "MinMax",
            "calibration_samples": 8,
            "per_channel": True,
            "quant_format": "QOperator",
        },
        {
            "name": "partial",
            "method": "partial",
            "budget_pp": 0.0,
            "calibration_method": "MinMax",
            "calibration_samples": 8,
            "per_channel": True,
            "quant_format": "QOperator",
        },
        {
            "name": "qat",
            "method": "qat",
            "epochs": 1,
            "lr": 1.0e-4,
            "batch_size": 8,
            "calibration_samples": 8,
            "per_channel": True,
            "quant_format": "QOperator",
        },
    ]
    # the same QAT trained against the baseline as teacher: its distilled twin
    config["quantize"]["recipes"].append(dict(config["quantize"]["recipes"][-1], name="qat_kd", distill="kd"))
    config["latency"].update(warmup=1, rounds=3)
    config["report"].update(bootstrap_samples=200)
    return config


def minimal_config(audio_root: Path) -> dict:
    """The fewest jobs that still run every stage once: one seed, one pruned model, one recipe."""
    config = tiny_config(audio_root)
    config["seeds"] = [0]
    config["prune"].update(
        structured=[{"criterion": "l1", "scope": "layer", "schedule": "oneshot", "rates": [0.5]}],
        sensitivity={"criterion": "l1", "rates": [0.5], "max_drop_pp": []},
        unstructured={"scopes": ["layer"], "sparsities": [], "distill": []},
        from_scratch={"rates": [], "distill": []},
    )
    config["quantize"]["recipes"] = config["quantize"]["recipes"][:1]
    return config


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *SNAKEMAKE,
            "--snakefile",
            str(workdir / "workflow" / "Snakefile"),
            "--directory",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Job counts per rule of a dry run."""
    result = snakemake(workdir, "-n", "--cores", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    if "Nothing to be done" in result.stdout + result.stderr:
        return {}
    table = (result.stdout + result.stderr).split("Job stats:")[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    return {rule: int(n) for rule, n in counts.items() if rule not in ("total", "all")}


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def make_project(workdir: Path) -> dict:
    """A copy of the workflow in ``workdir/workflow``, a tiny audio dataset and its config in ``workdir``."""
    (workdir / "workflow").mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = ROOT / name
        target = workdir / "workflow" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    synthesize_speech_folder(workdir / "audio")
    config = tiny_config(workdir / "audio")
    write_config(workdir, config)
    return config
