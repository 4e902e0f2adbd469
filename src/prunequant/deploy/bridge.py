"""Conversion run from the main environment: the model and its calibration samples handed to the
converter environment's Python (``.venv-tflm``, built from ``envs/tflm.lock``), which runs
``python -m prunequant.deploy.convert`` and returns the ``.tflite`` bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunequant.deploy.conversion_form import conversion_form
from prunequant.errors import UserError

__all__ = [
    "CONVERTER_ENV_COMMAND",
    "CONVERTER_ENV_DIR",
    "CONVERTER_PYTHON_VARIABLE",
    "ConversionRequest",
    "ERROR_PREFIX",
    "convert_model",
    "convert_models",
    "converter_python",
]

# Environment variable naming the converter environment's Python; else CONVERTER_ENV_DIR below.
CONVERTER_PYTHON_VARIABLE = "PRUNEQUANT_TFLITE_PYTHON"
CONVERTER_ENV_DIR = ".venv-tflm"  # beside src/ of this checkout
# The converter's command line prints a user's error behind this, on one line of stderr.
ERROR_PREFIX = "prunequant: error: "
CONVERTER_ENV_COMMAND = (
    "python3.11 -m venv .venv-tflm && .venv-tflm/bin/pip install --no-deps -r envs/tflm.lock"
)


def converter_python() -> str | None:
    """The Python that has litert-torch: $PRUNEQUANT_TFLITE_PYTHON, else this checkout's .venv-tflm.

    None when neither exists; the running interpreter when it can import litert-torch itself.
    """
    named = os.environ.get(CONVERTER_PYTHON_VARIABLE)
    if named:
        return named
    checkout = Path(__file__).resolve().parents[3]  # src/prunequant/deploy/convert.py
    candidate = checkout / CONVERTER_ENV_DIR / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    try:
        import litert_torch  # noqa: F401
    except ImportError:
        return None
    return sys.executable


@dataclasses.dataclass(frozen=True)
class ConversionRequest:
    """One model to convert, with the settings of :func:`convert` (see there)."""

    model: nn.Module
    calibration: np.ndarray
    per_channel: bool
    observer: str = "minmax"
    percentile: float = 99.999
    activation_qparams: Mapping[str, Sequence] | None = None
    deployment_form: bool = True


def convert_model(
    model: nn.Module,
    calibration: np.ndarray,
    *,
    per_channel: bool,
    observer: str = "minmax",
    percentile: float = 99.999,
    activation_qparams: Mapping[str, Sequence] | None = None,
    deployment_form: bool = True,
    python: str | None = None,  # the converter environment's Python; default: converter_python()
    timeout_s: float = 600.0,
) -> bytes:
    """:func:`convert`, run in the converter environment's Python (a subprocess).

    The model travels as a ``torch.export`` program of its conversion form (both environments
    run the same torch), the calibration as ``.npy``. A :class:`UserError` in the converter comes
    back as the same one-line :class:`UserError`.
    """
    request = ConversionRequest(
        model,
        calibration,
        per_channel=per_channel,
        observer=observer,
        percentile=percentile,
        activation_qparams=activation_qparams,
        deployment_form=deployment_form,
    )
    result = convert_models({"model": request}, python=python, timeout_s=timeout_s)["model"]
    if isinstance(result, UserError):
        raise result
    return result


def convert_models(
    requests: Mapping[str, ConversionRequest],
    *,
    python: str | None = None,  # the converter environment's Python; default: converter_python()
    timeout_s: float = 600.0,
) -> dict[str, bytes | UserError]:
    """Several conversions in one converter process: name → the .tflite, or the one-line
    :class:`UserError` that model's conversion gave (the others still convert).

    One process pays the converter's imports once for every model of a job.
    """
    python = python or converter_python()
    if python is None:
        raise UserError(
            "the TFLite converter environment is missing: build it with "
            f"`{CONVERTER_ENV_COMMAND}` in the project folder, or set {CONVERTER_PYTHON_VARIABLE}"
        )
    results: dict[str, bytes | UserError] = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        batch = {}
        for index, (name, request) in enumerate(requests.items()):
            try:
                batch[name] = _request_arguments(request, folder / str(index))
            except UserError as error:  # e.g. a model with no conversion form
                results[name] = error
        if batch:
            (folder / "batch.json").write_text(json.dumps(batch))
            _run_converter(python, ["--batch", str(folder / "batch.json")], timeout_s)
            errors = json.loads((folder / "errors.json").read_text())
            for name, arguments in batch.items():
                output = Path(arguments[arguments.index("--output") + 1])
                results[name] = UserError(errors[name]) if name in errors else output.read_bytes()
    return {name: results[name] for name in requests}


def _request_arguments(request: ConversionRequest, folder: Path) -> list[str]:
    """The command-line arguments of one conversion, its inputs written to ``folder``."""
    folder.mkdir(parents=True)
    form = conversion_form(request.model) if request.deployment_form else request.model.eval()
    calibration = np.ascontiguousarray(request.calibration, dtype=np.float32)
    torch.export.save(torch.export.export(form, (torch.from_numpy(calibration[:1]),)), folder / "model.pt2")
    np.save(folder / "calibration.npy", calibration)
    arguments = [
        "--exported", str(folder / "model.pt2"),
        "--calibration", str(folder / "calibration.npy"),
        "--output", str(folder / "model.tflite"),
        "--observer", request.observer,
        "--percentile", str(request.percentile),
    ]  # fmt: skip
    if request.per_channel:
        arguments.append("--per-channel")
    if request.activation_qparams:
        (folder / "qparams.json").write_text(
            json.dumps({k: list(v) for k, v in request.activation_qparams.items()})
        )
        arguments += ["--activation-qparams", str(folder / "qparams.json")]
    return arguments


def _run_converter(python: str, arguments: list[str], timeout_s: float) -> None:
    source_root = str(Path(__file__).resolve().parents[2])  # the folder holding prunequant/
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, environment.get("PYTHONPATH")]))
    result = subprocess.run(
        [python, "-m", "prunequant.deploy.convert", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout_s,
    )
    if result.returncode == 0:
        return
    user_line = next((line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)), None)
    if user_line:
        raise UserError(user_line.removeprefix(ERROR_PREFIX))
    raise RuntimeError(f"the TFLite converter ({python}) failed:\n{result.stderr[-4000:]}")
