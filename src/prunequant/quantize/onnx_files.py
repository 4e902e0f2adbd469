"""Handling ONNX files without torch: quiet tools, reproducible bytes.

Quantization and scoring in ONNX Runtime need no torch, and importing it costs seconds
per job; these helpers are shared by export (which needs torch) and those jobs (which do not).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx

__all__ = ["quiet", "strip_debug_metadata"]


@contextlib.contextmanager
def quiet():
    """Silence exporter chatter (progress lines, torchvision-missing warnings, deprecations)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def strip_debug_metadata(path: Path) -> None:
    """Drop exporter debug metadata: stack traces with absolute source paths, FX node names.

    They are a third of a small model's file, differ between checkouts and runs, and
    carry nothing the runtime uses; without them identical inputs give identical bytes.
    """
    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.doc_string = ""
    graph = model.graph
    for item in (*graph.node, *graph.initializer, *graph.value_info, *graph.input, *graph.output):
        del item.metadata_props[:]
        item.doc_string = ""
    onnx.save(model, str(path))
