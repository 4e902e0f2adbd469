"""End to end: the real workflow on a tiny audio dataset, in a temporary folder."""

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "src", "captions", "config.schema.yaml", "envs"]
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
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
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
    config["prune"]["rates"] = [0.25, 0.5]
    config["quantize"]["calibration_samples"] = 8
    config["evaluate"].update(latency_warmup=1, latency_repeats=3)
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    (workdir / "workflow").mkdir()
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
    result = snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, config


def test_every_stage_writes_its_outputs(finished_run):
    workdir, _ = finished_run
    report = workdir / "results" / "report"
    rows = list(csv.DictReader((report / "summary.csv").open()))
    assert len(rows) == 3 * 3  # baseline + 2 rates, each fp32/torch, fp32/onnxruntime, int8/onnxruntime
    assert {r["model"] for r in rows} == {"baseline", "rate0.25", "rate0.5"}
    assert {(r["precision"], r["runtime"]) for r in rows} == {
        ("fp32", "torch"),
        ("fp32", "onnxruntime"),
        ("int8", "onnxruntime"),
    }
    by_variant = {r["variant"]: r for r in rows}
    assert int(by_variant["rate0.5/fp32/torch"]["parameters"]) < int(
        by_variant["baseline/fp32/torch"]["parameters"]
    )
    # A model this tiny is dominated by container overhead: compare weight payloads, not files.
    assert int(by_variant["baseline/int8/onnxruntime"]["weight_bytes"]) < int(
        by_variant["baseline/fp32/onnxruntime"]["weight_bytes"]
    )
    for row in rows:
        assert 0 <= float(row["accuracy"]) <= 100 and float(row["latency_batch64_ms"]) > 0
    markdown = (report / "report.md").read_text()
    for figure in ("accuracy_vs_rate", "accuracy_vs_size", "training_curves"):
        png = report / "figures" / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{figure}.png" in markdown
    metadata = yaml.safe_load((workdir / "results" / "prepare_data" / "dataset.json").read_text())
    assert metadata["classes"] == ["high", "low"] and metadata["n_channels"] == 8
    log = (workdir / "logs" / "train_baseline.log").read_text()
    assert re.search(r"Epoch: 4 \|train loss: [\d.]+ \|train accuracy: [\d.]+ \|validation loss", log)
    assert re.search(r"Best accuracy: [\d.]+", log) and "Saving..." in log
    for rule in ("prepare_data", "train_baseline", "report"):
        assert (workdir / "benchmarks" / f"{rule}.tsv").exists()
    assert not any((workdir / ".prunequant-resume").rglob("*.pt"))  # finished jobs leave no resume state


def test_snakemake_html_report_embeds_the_figures(finished_run):
    workdir, _ = finished_run
    result = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    for name in ("accuracy_vs_rate.png", "accuracy_vs_size.png", "training_curves.png", "summary.csv"):
        assert name in html


def test_a_second_run_has_nothing_to_do(finished_run):
    workdir, _ = finished_run
    assert planned_jobs(workdir) == {}


def test_a_quantization_setting_reruns_only_quantize_evaluate_report(finished_run):
    workdir, config = finished_run
    changed = yaml.safe_load(yaml.safe_dump(config))  # also sorts every key: order must not matter
    changed["quantize"]["calibration_method"] = "Percentile"
    write_config(workdir, changed)
    try:
        assert planned_jobs(workdir) == {"quantize": 3, "evaluate": 3, "report": 1}
    finally:
        write_config(workdir, config)


def test_a_new_prune_rate_runs_only_its_branch(finished_run):
    workdir, config = finished_run
    changed = yaml.safe_load(yaml.safe_dump(config))
    changed["prune"]["rates"].append(0.75)
    write_config(workdir, changed)
    try:
        assert planned_jobs(workdir) == {
            "prune": 1,
            "finetune": 1,
            "export_onnx": 1,
            "quantize": 1,
            "evaluate": 3,
            "report": 1,
        }
    finally:
        write_config(workdir, config)


def test_editing_a_library_module_reruns_the_stages_that_import_it(finished_run):
    workdir, _ = finished_run
    module = workdir / "workflow" / "src" / "prunequant" / "report" / "figures.py"
    original = module.read_text()
    module.write_text(original + "\n# edited\n")
    try:
        assert planned_jobs(workdir) == {"report": 1}
    finally:
        module.write_text(original)
    assert planned_jobs(workdir) == {}


def test_a_new_recording_reruns_the_data_stage_and_everything_after(finished_run):
    workdir, _ = finished_run
    extra = workdir / "audio" / "low" / "spk0_99.wav"
    shutil.copy(workdir / "audio" / "low" / "spk0_0.wav", extra)
    try:
        planned = planned_jobs(workdir)
    finally:
        extra.unlink()
    assert planned["prepare_data"] == 1 and planned["report"] == 1 and planned["evaluate"] == 9


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda c: c["prune"]["rates"].append(1.5), "config key 'prune.rates[2]'"),
        (lambda c: c["quantize"].update(bits=4), "config key 'quantize'"),
        (lambda c: c["data"]["audio"].update(root="/no/such/folder"), "config key 'data.audio.root'"),
    ],
)
def test_a_bad_config_fails_before_any_job_with_a_clear_message(finished_run, edit, expected):
    workdir, config = finished_run
    broken = yaml.safe_load(yaml.safe_dump(config))
    edit(broken)
    write_config(workdir, broken)
    try:
        result = snakemake(workdir, "--cores", "1")
    finally:
        write_config(workdir, config)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output
    assert "Traceback" not in output
    assert "rule " not in output.split(expected)[0]  # nothing was scheduled before the error
