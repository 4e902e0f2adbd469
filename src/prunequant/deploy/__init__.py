"""Deployment on microcontrollers: TFLite conversion, TensorFlow Lite Micro measurement, budgets.

- :mod:`.convert`: a trained model to a full-int8 ``.tflite`` (litert-torch, in its own
  environment ``envs/tflm.lock``; :func:`convert_model` runs it there from the main environment);
- :mod:`.tflm`: a ``.tflite`` in TFLM: its ops checked, its predictions, arena, flash, host time;
- :mod:`.memory`: peak activation memory estimated from the graph, for any variant;
- :mod:`.budget`: device presets and budgets, and which variants fit them.

Names are re-exported lazily, as in :mod:`prunequant.quantize`: importing the package loads no
submodule.
"""

from __future__ import annotations

from prunequant.lazy import lazy_exports

# public name → the module that defines it
_EXPORTS = {
    "conversion_form": "prunequant.deploy.convert",
    "convert": "prunequant.deploy.convert",
    "ConversionRequest": "prunequant.deploy.convert",
    "convert_model": "prunequant.deploy.convert",
    "convert_models": "prunequant.deploy.convert",
    "converter_python": "prunequant.deploy.convert",
    "ArenaUsage": "prunequant.deploy.tflm",
    "arena_usage": "prunequant.deploy.tflm",
    "check_tflm_int8": "prunequant.deploy.tflm",
    "measure_tflite": "prunequant.deploy.tflm",
    "parse_arena_usage": "prunequant.deploy.tflm",
    "run_tflm": "prunequant.deploy.tflm",
    "smallest_arena": "prunequant.deploy.tflm",
    "time_per_inference": "prunequant.deploy.tflm",
    "tflite_io": "prunequant.deploy.tflm",
    "tflite_operators": "prunequant.deploy.tflm",
    "tflite_weight_bytes": "prunequant.deploy.tflm",
    "TflmClassifier": "prunequant.deploy.tflm",
    "model_peak_activation_bytes": "prunequant.deploy.memory",
    "peak_activation_bytes": "prunequant.deploy.memory",
    "DEVICE_PRESETS": "prunequant.deploy.budget",
    "Budget": "prunequant.deploy.budget",
    "budget_verdict": "prunequant.deploy.budget",
    "fits": "prunequant.deploy.budget",
    "fits_all": "prunequant.deploy.budget",
    "resolve_budget": "prunequant.deploy.budget",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
