"""Does litert-torch 0.10.0 write a correct 16x8 model (int16 activations, int8 weights)?

The PT2E quantizer is given int16 symmetric activation specs (zero point 0, as TFLite's 16x8 scheme
requires) and the MinMax observer; weights stay int8 per channel. The default model shape, random
weights, 64 random samples. Compared: the PT2E fake-quantized model (torch) against fp32, and the
converted file run by TFLM and by TFLite's own interpreter (ai-edge-litert, in the converter
environment) against the fake-quantized model. Run with the main environment's Python; the
conversion runs in the converter environment (envs/tflm.lock)::

    python bench/tflm_16x8.py > bench/results/tflm-16x8.txt
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from prunequant.model import BlockSpec, ModelSpec, build_model

SPEC = ModelSpec(12, 9, (BlockSpec(25, 2, 140),))
LENGTH, SAMPLES = 100, 64


def model_and_inputs():
    torch.manual_seed(0)
    inputs = np.random.default_rng(0).standard_normal((SAMPLES, SPEC.in_channels, LENGTH)).astype(np.float32)
    return build_model(SPEC).eval(), inputs


def convert_16x8(folder: Path) -> None:
    """In the converter environment: the 16x8 file, the fake-quant logits, TFLite's own answer."""
    import litert_torch
    from litert_torch.quantize import quant_config
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from prunequant.deploy import convert

    litert_torch.config.show_progress = False
    model, inputs = model_and_inputs()
    int16 = {
        "dtype": torch.int16,
        "quant_min": -32767,
        "quant_max": 32767,
        "qscheme": torch.per_tensor_symmetric,
    }
    config = convert._quantization_config(per_channel=True, observer="minmax", percentile=100.0)
    activation = dataclasses.replace(
        config.input_activation,
        **int16,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=1e-30, **int16),
    )
    quantizer = convert._ort_like_quantizer(
        dataclasses.replace(config, input_activation=activation, output_activation=activation)
    )
    example = (torch.from_numpy(inputs[:1]),)
    prepared = prepare_pt2e(torch.export.export(convert.conversion_form(model), example).module(), quantizer)
    with torch.no_grad():
        for sample in inputs:
            prepared(torch.from_numpy(sample[None]))
        quantized = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
        fake = np.concatenate([quantized(torch.from_numpy(s[None])).numpy() for s in inputs])
    edge = litert_torch.convert(
        quantized, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
    )
    (folder / "model.tflite").write_bytes(edge.model_content())
    np.save(folder / "fake_quant.npy", fake)
    (folder / "tflite.json").write_text(
        json.dumps({"tflite_interpreter": tflite_answer(folder, inputs, fake)})
    )


def tflite_answer(folder: Path, inputs: np.ndarray, fake: np.ndarray) -> str:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    try:
        interpreter.allocate_tensors()
    except RuntimeError as error:
        return f"refuses the file: {str(error).strip()}"
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    (scale_in, zero_in), (scale_out, zero_out) = given["quantization"], taken["quantization"]
    logits = []
    for sample in inputs:
        quantized = np.clip(np.rint(sample / scale_in) + zero_in, -32768, 32767).astype(np.int16)
        interpreter.set_tensor(given["index"], quantized[None])
        interpreter.invoke()
        logits.append((interpreter.get_tensor(taken["index"])[0].astype(np.float64) - zero_out) * scale_out)
    return f"max |logit difference| against fake-quant {np.abs(np.stack(logits) - fake).max():.4f}"


def tflm_logits(data: bytes, inputs: np.ndarray) -> tuple[np.ndarray, dict]:
    from tflite_micro import runtime

    from prunequant.deploy import tflm

    io = tflm.tflite_io(data)
    scale_in, zero_in = io["input"]["scale"], io["input"]["zero_point"]
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    outputs = []
    for sample in inputs:
        quantized = np.clip(np.rint(sample / scale_in) + zero_in, -32768, 32767).astype(np.int16)
        interpreter.set_input(quantized[None], 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0)[0].astype(np.float64))
    logits = (np.stack(outputs) - io["output"]["zero_point"]) * io["output"]["scale"]
    return logits, io


def main() -> None:
    from importlib.metadata import version

    from prunequant.deploy import tflm
    from prunequant.deploy.convert import converter_python

    model, inputs = model_and_inputs()
    with torch.no_grad():
        fp32 = model(torch.from_numpy(inputs)).numpy()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source_root = Path(__file__).resolve().parents[1] / "src"
        subprocess.run(
            [converter_python(), __file__, "--convert", str(folder)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": f"{source_root}{os.pathsep}{Path(__file__).parent}"},
        )
        data = (folder / "model.tflite").read_bytes()
        fake = np.load(folder / "fake_quant.npy")
        tflite = json.loads((folder / "tflite.json").read_text())["tflite_interpreter"]
    logits, io = tflm_logits(data, inputs)
    print(
        f"# {' '.join(sys.argv)}; litert-torch 0.10.0 (envs/tflm.lock), "
        f"tflite-micro {version('tflite-micro')}"
    )
    print(f"# model {SPEC}, length {LENGTH}, random weights, {SAMPLES} random samples\n")
    print(f"ops: {' '.join(tflm.tflite_operators(data))}")
    print(
        f"input {io['input']['type']} (zero point {io['input']['zero_point']}), output {io['output']['type']}"
    )
    print(f"fp32 logits range: {fp32.min():.4f} to {fp32.max():.4f}")
    print(f"PT2E fake-quant 16x8 (torch) vs fp32: max |logit difference| {np.abs(fake - fp32).max():.4f}")
    print(
        f"TFLM on the 16x8 file vs fake-quant: max |logit difference| {np.abs(logits - fake).max():.4f}; "
        f"top-1 agreement with fp32 {np.mean(logits.argmax(1) == fp32.argmax(1)):.4f}"
    )
    print(f"TFLite's interpreter (ai-edge-litert 2.3.0) {tflite}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--convert":
        convert_16x8(Path(sys.argv[2]))
    else:
        main()
