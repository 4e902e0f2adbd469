"""End to end: the real workflow on a tiny audio dataset, in a temporary folder."""

import csv
import json
import re
import shutil

import pytest
import yaml
from workflow_support import make_project, planned_jobs, snakemake, write_config

from prunequant.variants import configured_models


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = make_project(workdir)
    result = snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir, config


def test_every_stage_writes_its_outputs(finished_run):
    workdir, config = finished_run
    report = workdir / "results" / "report"
    models = configured_models(config["prune"])
    summary = list(csv.DictReader((report / "summary.csv").open()))
    # every model in PyTorch fp32, plus the baseline in ONNX Runtime fp32 and by each of 4 recipes,
    # and in TFLM by each of the 3 full-int8 ones (not partial)
    assert len(summary) == len(models) + 5 + 3
    assert {row["model"] for row in summary} == set(models)
    runs = list(csv.DictReader((report / "runs.csv").open()))
    assert len(runs) == 2 * len(summary) and {row["run"] for row in runs} == {"seed0", "seed1"}
    by_variant = {row["variant"]: row for row in summary}
    baseline = by_variant["baseline/fp32_torch"]
    assert int(float(by_variant["l1-layer-oneshot-r0.5/fp32_torch"]["parameters"])) < int(
        float(baseline["parameters"])
    )
    sparse = by_variant["sparse-layer-s0.5/fp32_torch"]
    assert float(sparse["nonzero_parameters"]) < float(sparse["parameters"])
    # A model this tiny is dominated by container overhead: compare weight payloads, not files.
    assert float(by_variant["baseline/int8-minmax_onnxruntime"]["weight_bytes"]) < float(
        by_variant["baseline/fp32_onnxruntime"]["weight_bytes"]
    )
    # every variant, fp32 ones too, carries the graph's peak activation estimate
    assert all(float(row["peak_activation_bytes"]) > 0 for row in summary)
    for row in summary:
        assert float(row["accuracy_low"]) <= float(row["accuracy"]) <= float(row["accuracy_high"])
        assert row["interval_method"].startswith("t over 2")
    for row in summary:
        if row["model"] != "baseline":
            assert row["vs_baseline_verdict"] in ("better", "worse", "no detectable difference")
    latency = list(csv.DictReader((report / "latency.csv").open()))
    assert {row["runtime"] for row in latency} == {"torch", "onnxruntime"}
    assert all(float(row["low_ms"]) <= float(row["median_ms"]) <= float(row["high_ms"]) for row in latency)
    markdown = (report / "report.md").read_text()
    for figure in report.glob("figures/*.png"):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{figure.name}" in markdown
    assert len(list(report.glob("figures/*.png"))) == 22  # with device_budgets
    comparisons = list(csv.DictReader((report / "comparisons.csv").open()))
    assert {row["question"] for row in comparisons} >= {
        "vs_baseline",
        "criterion_vs_random",
        "pruned_vs_scratch",
        "distilled_vs_plain",
        "distilled_scratch_vs_pruned",
    }
    assert all(
        row["n_units"] == "2" and len(row["run_differences_pp"].split(";")) == 2 for row in comparisons
    )
    for heading in (
        "## Recommendation",
        "## Every variant",
        "## The pruning study",
        "## The quantization study",
        "## What distillation buys",
    ):
        assert heading in markdown
    provenance = json.loads((report / "provenance.json").read_text())
    assert provenance["seeds"] == [0, 1] and provenance["versions"]["torch"]
    predictions = workdir / "results" / "train_baseline" / "seed0" / "predictions.csv"
    first = next(csv.DictReader(predictions.open()))
    assert first["sample_id"].endswith(".wav") and "logit_0" in first
    metadata = json.loads((workdir / "results" / "data" / "fixed" / "dataset.json").read_text())
    assert metadata["classes"] == ["high", "low"] and metadata["n_channels"] == 8
    assert set(metadata["groups"]["test"]).isdisjoint(metadata["groups"]["train"])
    log = (workdir / "logs" / "train_baseline" / "seed0.log").read_text()
    assert re.search(r"Epoch: 4 \|train loss: [\d.]+ \|train accuracy: [\d.]+ \|validation loss", log)
    assert re.search(r"Best accuracy: [\d.]+", log) and "Saving..." in log
    assert (workdir / "benchmarks" / "train_baseline" / "seed0.tsv").exists()
    assert not any((workdir / ".prunequant-resume").rglob("*.pt"))  # finished jobs leave no resume state


def test_every_full_int8_recipe_runs_in_tflm_with_its_arena_flash_and_the_device_section(finished_run):
    workdir, _ = finished_run
    for run in ("seed0", "seed1"):
        for recipe in ("minmax", "qat", "qat_kd"):
            folder = workdir / "results" / "tflm" / run / "baseline" / recipe
            evaluation = json.loads((folder / "evaluation.json").read_text())
            assert evaluation["deployment"] == f"int8-{recipe}_tflm"
            assert evaluation["flash_bytes"] == (folder / "model.tflite").stat().st_size > 0
            head, tail = evaluation["arena_head_bytes"], evaluation["arena_tail_bytes"]
            assert head + tail == evaluation["arena_bytes"]
            assert evaluation["onnxruntime_int8_agreement_pct"] >= 99.0
            assert evaluation["peak_activation_bytes"] > 0
        assert not (workdir / "results" / "tflm" / run / "baseline" / "partial").exists()
    report = (workdir / "results" / "report" / "report.md").read_text()
    assert "## Down to the microcontroller (TensorFlow Lite Micro)" in report
    assert "| cortex-m4 | cortex-m0plus |" in report
    assert "**cortex-m4**: ship `baseline/int8-" in report
    latency = json.loads((workdir / "results" / "latency" / "onnxruntime.json").read_text())
    assert "_tflm" not in json.dumps(latency)


def test_seeds_change_the_weights_but_not_the_split(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    ids = [
        [
            row["sample_id"]
            for row in csv.DictReader((results / "train_baseline" / run / "predictions.csv").open())
        ]
        for run in ("seed0", "seed1")
    ]
    assert ids[0] == ids[1]
    weights = [(results / "train_baseline" / run / "model.pt").read_bytes() for run in ("seed0", "seed1")]
    assert weights[0] != weights[1]


def test_snakemake_html_report_embeds_the_figures(finished_run):
    workdir, _ = finished_run
    result = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    for name in ("pareto_weight_bytes.png", "criteria.png", "training_curves.png", "summary.csv"):
        assert name in html


def test_a_second_run_has_nothing_to_do(finished_run):
    workdir, _ = finished_run
    assert planned_jobs(workdir) == {}


def _planned_with(workdir, config, edit):
    changed = yaml.safe_load(yaml.safe_dump(config))  # also sorts every key: order must not matter
    edit(changed)
    write_config(workdir, changed)
    try:
        return planned_jobs(workdir)
    finally:
        write_config(workdir, config)


def test_a_quantization_setting_reruns_only_that_recipe_its_timing_and_report(finished_run):
    """Each quantize job scores its own int8 model, so its evaluation reruns with it."""
    workdir, config = finished_run
    planned = _planned_with(
        workdir,
        config,
        lambda c: c["quantize"]["recipes"][0].update(calibration_method="Percentile", percentile=99.9),
    )
    # the TFLM job of each run converts that recipe again, from the same calibration samples
    assert planned == {"quantize": 2, "tflm": 2, "time_latency": 1, "report": 1}


def test_a_latency_setting_reruns_only_the_timing_and_the_report(finished_run):
    workdir, config = finished_run
    planned = _planned_with(workdir, config, lambda c: c["latency"].update(rounds=5))
    assert planned == {"time_latency": 2, "report": 1}


def test_a_new_rate_runs_only_its_branch(finished_run):
    workdir, config = finished_run
    planned = _planned_with(workdir, config, lambda c: c["prune"]["structured"][0]["rates"].append(0.75))
    assert planned == {"prune": 2, "time_latency": 1, "report": 1}


def test_a_new_criterion_runs_only_its_branch(finished_run):
    workdir, config = finished_run
    new = {"criterion": "bn_scale", "scope": "layer", "schedule": "oneshot", "rates": [0.5]}
    planned = _planned_with(workdir, config, lambda c: c["prune"]["structured"].append(new))
    assert planned == {"prune": 2, "time_latency": 1, "report": 1}


@pytest.mark.parametrize(
    "edit, planned",
    [
        (lambda code: code + "\nEDITED = True\n", {"report": 1}),
        (lambda code: code + "\n# a comment\n", {}),
        (lambda code: code.replace('"""', '"""Edited. ', 1), {}),  # the module's docstring
    ],
    ids=["code", "comment", "docstring"],
)
def test_editing_a_library_modules_code_reruns_the_stages_that_import_it(finished_run, edit, planned):
    workdir, _ = finished_run
    module = workdir / "workflow" / "src" / "prunequant" / "report" / "study_figures.py"
    original = module.read_text()
    module.write_text(edit(original))
    try:
        assert planned_jobs(workdir) == planned
    finally:
        module.write_text(original)
    assert planned_jobs(workdir) == {}


def test_a_comment_in_a_script_reruns_nothing(finished_run):
    workdir, _ = finished_run
    script = workdir / "workflow" / "scripts" / "report.py"
    original = script.read_text()
    script.write_text(original + "\n# a comment\n")  # newer than the outputs, the same code
    try:
        assert planned_jobs(workdir) == {}
    finally:
        script.write_text(original)


def test_a_new_recording_reruns_the_data_stage_and_everything_after(finished_run):
    workdir, _ = finished_run
    extra = workdir / "audio" / "low" / "spk0_99.wav"
    shutil.copy(workdir / "audio" / "low" / "spk0_0.wav", extra)
    try:
        planned = planned_jobs(workdir)
    finally:
        extra.unlink()
    assert planned["prepare_data"] == 1 and planned["report"] == 1 and planned["train_baseline"] == 2


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            lambda c: c["prune"]["structured"][0]["rates"].append(1.5),
            "config key 'prune.structured[0].rates[2]'",
        ),
        (lambda c: c["quantize"].update(bits=4), "config key 'quantize'"),
        (lambda c: c["data"]["audio"].update(root="/no/such/folder"), "config key 'data.audio.root'"),
        (lambda c: c["model"].update(not_prunable=["blocks.4"]), "config key 'model.not_prunable[0]'"),
        (lambda c: c["quantize"].update(models=["nothing"]), "config key 'quantize.models[0]'"),
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


def test_leave_one_group_out_plans_one_run_per_held_out_speaker_and_seed(finished_run):
    workdir, config = finished_run
    planned = _planned_with(workdir, config, lambda c: c["data"].update(folds="leave_one_group_out"))
    assert planned["prepare_data"] == 3  # three synthesized speakers, each held out once
    assert planned["train_baseline"] == 3 * 2  # every fold with both seeds


def test_a_statistics_setting_reruns_only_the_report(finished_run):
    workdir, config = finished_run
    planned = _planned_with(
        workdir, config, lambda c: c["report"].update(multiple_comparisons="benjamini_hochberg", power=0.9)
    )
    assert planned == {"report": 1}


def test_a_split_per_run_plans_one_dataset_per_run_and_retrains_on_it(finished_run):
    workdir, config = finished_run
    planned = _planned_with(workdir, config, lambda c: c["data"].update(split_per_run=True))
    assert planned["prepare_data"] == 2  # one split per seed
    assert planned["train_baseline"] == 2


def test_editing_a_caption_reruns_only_the_report(finished_run):
    workdir, _ = finished_run
    caption = workdir / "workflow" / "captions" / "criteria.rst"
    original = caption.read_text()
    caption.write_text(original.replace("Pruning criteria side by side.", "Criteria against random."))
    try:
        assert planned_jobs(workdir) == {"report": 1}
    finally:
        caption.write_text(original)
    assert planned_jobs(workdir) == {}
