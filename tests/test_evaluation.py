import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_prepared_dataset

from prunequant.checkpoint import save_model
from prunequant.evaluation import evaluate_variant, open_model, read_logits, write_evaluation
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize.export import export_onnx
from prunequant.quantize.fold import deployment_model
from prunequant.quantize.ptq import quantize_ptq
from prunequant.variants import parse_model

VARIANT = {"run": "seed0", "seed": 0, "model": "baseline", **vars(parse_model("baseline"))}
del VARIANT["name"]


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("evaluate")
    dataset = write_prepared_dataset(directory, n_samples=60, n_channels=4, length=30)
    torch.manual_seed(0)
    model = build_model(ModelSpec(4, 3, (BlockSpec(5, 2, 8),))).eval()
    save_model(model, directory / "model.pt")
    export_onnx(deployment_model(model), directory / "model.onnx", n_channels=4, length=30)
    return directory, model, dataset


@pytest.mark.parametrize(
    "deployment,artifact", [("fp32_torch", "model.pt"), ("fp32_onnxruntime", "model.onnx")]
)
def test_metrics_describe_the_variant_and_match_its_predictions(variant_files, deployment, artifact):
    directory, model, dataset = variant_files
    metrics, predictions = evaluate_variant(
        artifact_path=directory / artifact,
        parent_model_path=directory / "model.pt",
        dataset_path=directory / "dataset.npz",
        variant=dict(VARIANT, deployment=deployment),
        batch_size=4,
    )
    predictions = pd.DataFrame(predictions)
    test = predictions[predictions["split"] == "test"]
    with torch.no_grad():
        expected = model(torch.from_numpy(dataset.X_test)).argmax(1).numpy()
    np.testing.assert_array_equal(test["prediction"].to_numpy(), expected)
    np.testing.assert_array_equal(test["label"].to_numpy(), dataset.y_test)
    assert list(test["sample_id"]) == list(dataset.ids_test)
    assert metrics["accuracy"] == pytest.approx((expected == dataset.y_test).mean() * 100)
    val = predictions[predictions["split"] == "val"]
    assert metrics["val_accuracy"] == pytest.approx(val["correct"].mean() * 100)
    assert metrics["n_test"] == len(dataset.y_test) == len(test) and metrics["n_val"] == len(val)
    assert metrics["parameters"] == sum(p.numel() for p in model.parameters())
    assert metrics["size_bytes"] == (directory / artifact).stat().st_size
    assert metrics["variant"] == f"baseline/{deployment}" and metrics["runtime"] == deployment.split("_")[1]
    assert "latency_batch1_ms" not in metrics  # timing belongs to the interleaved latency job


def test_int8_evaluation_reports_agreement_with_its_parent(variant_files, tmp_path):
    directory, _, dataset = variant_files
    parent = write_evaluation(
        artifact_path=directory / "model.onnx",
        parent_model_path=directory / "model.pt",
        dataset_path=directory / "dataset.npz",
        variant=dict(VARIANT, deployment="fp32_onnxruntime"),
        batch_size=8,
        evaluation_path=tmp_path / "parent" / "evaluation.json",
        predictions_path=tmp_path / "parent" / "predictions.csv",
    )
    quantize_ptq(
        fp32_path=directory / "model.onnx",
        int8_path=tmp_path / "int8.onnx",
        record_path=tmp_path / "record.json",
        train_inputs=dataset.X_train,
        seed=0,
        calibration_samples=None,
        calibration_method="MinMax",
        quant_format="QOperator",
        per_channel=True,
        depthwise_channel_multiple=1,  # the padding's int64 pad amounts outweigh this tiny model's saving
    )
    metrics = write_evaluation(
        artifact_path=tmp_path / "int8.onnx",
        parent_model_path=directory / "model.pt",
        dataset_path=directory / "dataset.npz",
        variant=dict(VARIANT, deployment="int8-minmax_onnxruntime"),
        batch_size=8,
        evaluation_path=tmp_path / "int8.json",
        predictions_path=tmp_path / "int8.csv",
        parent_predictions_path=tmp_path / "parent" / "predictions.csv",
    )
    assert json.loads((tmp_path / "int8.json").read_text()) == metrics
    assert metrics["recipe"] == "minmax" and metrics["precision"] == "int8"
    assert metrics["weight_bytes"] < parent["weight_bytes"]
    parent_logits, logits = (
        read_logits(tmp_path / "parent" / "predictions.csv"),
        read_logits(tmp_path / "int8.csv"),
    )
    assert metrics["parameters"] == parent["parameters"] and metrics["macs"] == parent["macs"]
    expected = (parent_logits.argmax(1) == logits.argmax(1)).mean() * 100
    assert metrics["agreement_pct"] == pytest.approx(expected)
    assert metrics["max_abs_logit_error"] == pytest.approx(np.abs(parent_logits - logits).max(), rel=1e-5)
    assert len(pd.read_csv(tmp_path / "int8.csv")) == len(dataset.y_val) + len(dataset.y_test)


def test_unknown_runtime_is_rejected(variant_files):
    directory, _, _ = variant_files
    with pytest.raises(ValueError, match="unknown runtime"):
        open_model(directory / "model.pt", "tflite")


@pytest.mark.parametrize(
    ("modules", "not_loaded"),
    [
        # a quantization job: pandas costs about half a second of start-up, torch two
        ("prunequant.evaluation, prunequant.quantize.ptq", ["pandas", "torch"]),
        # a training or pruning job needs neither ONNX Runtime nor scipy to score a torch model
        ("prunequant.evaluation, prunequant.training", ["pandas", "onnxruntime", "onnx", "scipy"]),
    ],
)
def test_scoring_loads_only_the_libraries_its_job_uses(modules, not_loaded):
    code = f"import sys, {modules}; print(sorted(name for name in {not_loaded!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
