import numpy as np
import pytest
import torch
from conftest import write_prepared_dataset

from prunequant.checkpoint import save_model
from prunequant.evaluation import evaluate_variant
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.quantize import deployment_model, export_onnx


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("evaluate")
    dataset = write_prepared_dataset(directory, n_samples=60, n_channels=4, length=30)
    torch.manual_seed(0)
    model = build_model(ModelSpec(4, 3, (BlockSpec(5, 2, 8),))).eval()
    save_model(model, directory / "model.pt")
    export_onnx(deployment_model(model), directory / "model.onnx", n_channels=4, length=30)
    return directory, model, dataset


@pytest.mark.parametrize("runtime,artifact", [("torch", "model.pt"), ("onnxruntime", "model.onnx")])
def test_metrics_describe_the_variant_and_match_its_predictions(variant_files, runtime, artifact):
    directory, model, dataset = variant_files
    metrics, predictions = evaluate_variant(
        artifact_path=directory / artifact,
        parent_model_path=directory / "model.pt",
        dataset_path=directory / "dataset.npz",
        model_name="baseline",
        prune_rate=0.0,
        precision="fp32",
        runtime=runtime,
        batch_size=4,
        latency_threads=1,
        latency_warmup=0,
        latency_repeats=2,
    )
    with torch.no_grad():
        expected = model(torch.from_numpy(dataset.X_test)).argmax(1).numpy()
    np.testing.assert_array_equal(predictions["prediction"].to_numpy(), expected)
    np.testing.assert_array_equal(predictions["label"].to_numpy(), dataset.y_test)
    assert metrics["accuracy"] == pytest.approx((expected == dataset.y_test).mean() * 100)
    assert metrics["n_test"] == len(dataset.y_test) == len(predictions)
    assert metrics["parameters"] == sum(p.numel() for p in model.parameters())
    assert metrics["size_bytes"] == (directory / artifact).stat().st_size
    assert metrics["latency_batch1_ms"] > 0 and metrics["latency_batch64_ms"] > 0
    assert (metrics["runtime"], metrics["latency_threads"]) == (runtime, 1)


def test_unknown_runtime_is_rejected(variant_files):
    directory, _, _ = variant_files
    with pytest.raises(ValueError, match="unknown runtime"):
        evaluate_variant(
            artifact_path=directory / "model.pt",
            parent_model_path=directory / "model.pt",
            dataset_path=directory / "dataset.npz",
            model_name="baseline",
            prune_rate=0.0,
            precision="fp32",
            runtime="tflite",
            batch_size=4,
            latency_threads=1,
            latency_warmup=0,
            latency_repeats=1,
        )
