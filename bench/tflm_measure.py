"""The default study's baseline and its 50%-pruned model in TensorFlow Lite Micro, on real data.

JapaneseVowels (bundled, 12 channels resampled to 100 steps, 9 classes) and config.yaml's model
(one block: kernel 25, stride 2, 140 channels) trained as the baseline rule trains it, then pruned
(l1, layer, one shot, 50%) and fine-tuned. Each is converted to a MinMax per-channel int8
``.tflite`` (calibration: every training sample, as the default MinMax recipe) and quantized by
ONNX Runtime with the same recipe; printed per model: flash, arena total / head / tail, the
bisection check, the graph's activation estimate against the arena head, TFLM and ORT int8
accuracy and their agreement, and the host time per inference (reference kernels, x86: a host
figure, not a microcontroller's). Needs the converter environment (envs/tflm.lock)::

    python bench/tflm_measure.py > bench/results/tflm-measure.txt
"""

import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from prunequant.checkpoint import load_model
from prunequant.data import prepare_dataset
from prunequant.deploy import memory, tflm
from prunequant.deploy.convert import conversion_form, convert_model
from prunequant.engine import TrainConfig, seed_everything, train
from prunequant.model import BlockSpec, ModelSpec, build_model
from prunequant.prune.structured import prune_structured
from prunequant.quantize import OnnxClassifier, deployment_model, export_onnx, quantize_ptq

BASELINE_TRAINING = TrainConfig(
    epochs=60, batch_size=32, lr=1e-3, weight_decay=0.0, lr_schedule="cosine", lr_step_epochs=20, seed=0
)
FINETUNING = TrainConfig(
    epochs=20, batch_size=32, lr=1e-3, weight_decay=0.0, lr_schedule="cosine", lr_step_epochs=10, seed=0
)


def trained(model, dataset, config, folder: Path, name: str):
    tensors = {
        split: (
            torch.from_numpy(getattr(dataset, f"X_{split}")),
            torch.from_numpy(getattr(dataset, f"y_{split}")),
        )
        for split in ("train", "val")
    }
    train(
        model,
        tensors["train"],
        tensors["val"],
        config,
        device=torch.device("cpu"),
        best_path=folder / f"{name}.pt",
        resume_path=folder / f"{name}.resume",
        job_fingerprint=name,
        log=lambda line: None,
    )
    return load_model(folder / f"{name}.pt")[0]


def ort_int8_logits(model, dataset, folder: Path, name: str) -> np.ndarray:
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}-int8.onnx"
    export_onnx(deployment_model(model), fp32, n_channels=dataset.n_channels, length=dataset.X_train.shape[2])
    quantize_ptq(
        fp32_path=fp32,
        int8_path=int8,
        record_path=folder / f"{name}-int8.json",
        train_inputs=dataset.X_train,
        seed=0,
        calibration_samples=None,
        calibration_method="MinMax",
        quant_format="QOperator",
        per_channel=True,
    )
    return OnnxClassifier(int8)(dataset.X_test)


def report(name: str, model, dataset, folder: Path) -> None:
    started = time.perf_counter()
    data = convert_model(model, dataset.X_train, per_channel=True)
    convert_seconds = time.perf_counter() - started
    record = tflm.measure_tflite(data, dataset.X_test[0], name=name)
    tflm_logits = tflm.run_tflm(data, dataset.X_test)
    ort_logits = ort_int8_logits(model, dataset, folder, name)
    with torch.no_grad():
        fp32_logits = model(torch.from_numpy(dataset.X_test)).numpy()
    example = torch.zeros(1, dataset.n_channels, dataset.X_train.shape[2])
    estimate = memory.model_peak_activation_bytes(conversion_form(model), example, element_size=1)
    fp32_estimate = memory.model_peak_activation_bytes(model, example, element_size=4)
    tflm_top1, ort_top1 = tflm_logits.argmax(axis=1), ort_logits.argmax(axis=1)
    print(f"## {name}: widths {[block.pointwise.out_channels for block in model.blocks]}")
    print(f"ops: {' '.join(record['operators'])}")
    print(f"flash (.tflite bytes): {record['flash_bytes']}")
    print(
        f"arena total / head / tail: {record['arena_bytes']} / {record['arena_head_bytes']} / "
        f"{record['arena_tail_bytes']} B; smallest arena by bisection {record['arena_bytes_by_bisection']} B"
    )
    print(
        f"activation estimate (int8, converted graph): {estimate.bytes} B at {estimate.step} "
        f"({estimate.bytes - record['arena_head_bytes']:+d} B against the head); fp32 as trained: "
        f"{fp32_estimate.bytes} B"
    )
    print(
        f"test accuracy: fp32 {np.mean(fp32_logits.argmax(1) == dataset.y_test):.4f}, ORT int8 "
        f"{np.mean(ort_top1 == dataset.y_test):.4f}, TFLM int8 {np.mean(tflm_top1 == dataset.y_test):.4f} "
        f"({len(dataset.y_test)} samples)"
    )
    print(
        f"top-1 agreement TFLM-ORT {np.mean(tflm_top1 == ort_top1):.4f}, TFLM-fp32 "
        f"{np.mean(tflm_top1 == fp32_logits.argmax(1)):.4f}; median |logit TFLM - ORT| "
        f"{np.median(np.abs(tflm_logits - ort_logits)):.4f} "
        f"(output scale {record['io']['output']['scale']:.4f})"
    )
    print(
        f"host time per inference (TFLM reference kernels, x86; not an MCU figure): median "
        f"{record['host_ms_median']:.3f} ms (IQR {record['host_ms_q1']:.3f}-{record['host_ms_q3']:.3f})"
    )
    print(f"conversion in the converter environment: {convert_seconds:.1f} s (a fresh interpreter)\n")


def main() -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"# {' '.join(sys.argv)}")
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average {load}")
    print(
        f"# Python {platform.python_version()}, torch {torch.__version__}, tflite-micro "
        f"{version('tflite-micro')}, converter: envs/tflm.lock (litert-torch 0.10.0)\n"
    )
    dataset = prepare_dataset(
        source="bundled",
        bundled_name="JapaneseVowels",
        length=100,
        length_method="resample",
        val_fraction=0.2,
        test_fraction=0.2,
        seed=0,
    )
    spec = ModelSpec(dataset.n_channels, len(dataset.classes), (BlockSpec(25, 2, 140),))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        seed_everything(0)
        baseline = trained(build_model(spec), dataset, BASELINE_TRAINING, folder, "baseline")
        pruned = prune_structured(baseline, rate=0.5, criterion="l1")[0]
        pruned = trained(pruned, dataset, FINETUNING, folder, "pruned")
        report("baseline", baseline, dataset, folder)
        report("l1-layer-oneshot-r0.5", pruned, dataset, folder)


if __name__ == "__main__":
    main()
