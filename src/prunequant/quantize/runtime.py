"""Running an ONNX classifier in ONNX Runtime on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

__all__ = ["session_options", "OnnxClassifier"]


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """CPU session settings for timing and evaluation: fixed threads, sequential, all graph optimisations.

    ORT_ENABLE_ALL includes the layout transforms that run int8 convolutions and pooling
    channels-last; with ORT_ENABLE_EXTENDED or BASIC the seed model's int8 graph runs 1.2 to 1.6
    times slower at batch 64, while fp32 does not change (bench/results/int8-profile.txt). It is
    ORT's default; it is set here so that no caller drops it.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    return options


class OnnxClassifier:
    """An ORT CPU session pinned to ``threads`` intra-op threads, one op at a time."""

    def __init__(self, path: str | os.PathLike, *, threads: int = 1):
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, classes] for a float32 [N, C, T] batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self(batch).argmax(axis=1)
