"""A ``.tflite`` file in TensorFlow Lite Micro: its ops checked, its predictions, arena and host time.

Runs in the main environment: the ``tflite-micro`` package brings TFLM's Python interpreter (the
reference C++ kernels, x86 builds of what a microcontroller runs) and the TFLite flatbuffer schema.

- :func:`check_tflm_int8`: every op has a TFLM int8 kernel, input and output are int8, and no
  activation is float, so the file runs on an integer-only MCU as it is.
- :func:`run_tflm`: float logits of float inputs, quantized and dequantized with the file's own
  input and output parameters, one sample per invoke (the model is built for batch 1).
- :func:`arena_usage`: the recording allocator's arena total, head (the activations, planned by
  TFLM's memory planner) and tail (persistent structures: tensor metadata, kernel buffers; smaller
  on a 32-bit MCU, whose pointers are half the size). The interpreter has no getter for them: it
  prints them from C++ to file descriptor 2, so they are read from there (:func:`parse_arena_usage`).
  :func:`smallest_arena` checks them: the smallest ``arena_size`` the interpreter can be built with,
  which equals the total within 16 bytes on the default model's shapes. On tiny models it is
  larger (3,256 B against a total of 2,800 B with 24 channels over 40 steps): while planning,
  the allocator borrows room in the head beyond what the planned activations keep.
- :func:`time_per_inference`: median wall time of one invoke on this host: a host figure for
  comparing variants, not a microcontroller's latency.
- flash: the ``.tflite`` bytes themselves (weights, graph and metadata), ``len(data)``.
"""

from __future__ import annotations

import faulthandler
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from prunequant.errors import UserError

__all__ = [
    "TFLM_INT8_OPS",
    "ArenaUsage",
    "tflite_operators",
    "tflite_io",
    "tflite_weight_bytes",
    "TflmClassifier",
    "check_tflm_int8",
    "parse_arena_usage",
    "arena_usage",
    "smallest_arena",
    "run_tflm",
    "time_per_inference",
    "measure_tflite",
]

# Builtin ops whose TFLM reference kernel (tensorflow/lite/micro/kernels/) runs int8 tensors, as
# registered by the interpreter's op resolver: the ones a convolutional classifier's graph uses.
TFLM_INT8_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "BATCH_MATMUL",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "LEAKY_RELU",
        "LOGISTIC",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PAD",
        "PADV2",
        "QUANTIZE",
        "RELU",
        "RELU6",
        "RESHAPE",
        "SLICE",
        "SOFTMAX",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
# Tensor types of an integer-only graph: int8 activations and weights, int32 biases and shapes.
_INTEGER_TENSOR_TYPES = frozenset({"INT8", "INT32"})
DEFAULT_ARENA_BYTES = 1 << 20  # large enough to build any model of this study, then measured
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def _subgraph(data: bytes):
    schema = _schema()
    model = schema.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise UserError(f"a .tflite with {model.SubgraphsLength()} subgraphs is not a plain classifier")
    return schema, model, model.Subgraphs(0)


def tflite_operators(data: bytes) -> list[str]:
    """Builtin op names of the model's graph, in execution order (e.g. ``DEPTHWISE_CONV_2D``)."""
    schema, model, graph = _subgraph(data)
    op_names = _names(schema.BuiltinOperator)
    names = []
    for index in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(index).OpcodeIndex())
        # Codes above 127 live in BuiltinCode, older ones in DeprecatedBuiltinCode; the larger is right.
        names.append(op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return names


def _tensor_description(schema, graph, tensor_index: int) -> dict:
    tensor = graph.Tensors(tensor_index)
    quantization = tensor.Quantization()
    scales = quantization.ScaleAsNumpy() if quantization and quantization.ScaleLength() else np.ones(1)
    zero_points = (
        quantization.ZeroPointAsNumpy() if quantization and quantization.ZeroPointLength() else np.zeros(1)
    )
    return {
        "type": _names(schema.TensorType)[tensor.Type()],
        "shape": tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else [],
        "scale": float(scales[0]),
        "zero_point": int(zero_points[0]),
    }


def tflite_io(data: bytes) -> dict:
    """``{"input": {...}, "output": {...}}``: type name, shape, scale and zero point of each."""
    schema, _, graph = _subgraph(data)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise UserError(
            f"a classifier has one input and one output; this .tflite has {graph.InputsLength()} and "
            f"{graph.OutputsLength()}"
        )
    return {
        "input": _tensor_description(schema, graph, graph.Inputs(0)),
        "output": _tensor_description(schema, graph, graph.Outputs(0)),
    }


def tflite_weight_bytes(data: bytes) -> int:
    """Bytes of the constant tensors' data (weights, biases, shapes): flash less graph and metadata."""
    _, model, graph = _subgraph(data)
    constant_buffers = {graph.Tensors(i).Buffer() for i in range(graph.TensorsLength())}
    total = 0
    for index in constant_buffers:
        buffer = model.Buffers(index)
        # Large models keep buffer data outside the flatbuffer (offset and size); small ones inline.
        total += buffer.Size() if buffer.Offset() > 1 else buffer.DataLength()
    return int(total)


class TflmClassifier:
    """A ``.tflite`` file as a callable: float32 [N, C, T] in, float logits out, in TFLM."""

    def __init__(self, path: str | os.PathLike):
        with open(path, "rb") as stream:
            self.data = stream.read()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        return run_tflm(self.data, inputs)


def check_tflm_int8(data: bytes, name: str = "the model") -> list[str]:
    """The op list, after checking that ``data`` runs integer-only in TFLM; else a one-line UserError."""
    operators = tflite_operators(data)
    without_kernel = sorted(set(operators) - TFLM_INT8_OPS)
    if without_kernel:
        raise UserError(f"{name}: ops {without_kernel} have no TFLM int8 kernel; its ops are {operators}")
    io = tflite_io(data)
    for side in ("input", "output"):
        if io[side]["type"] != "INT8":
            raise UserError(f"{name}: its {side} is {io[side]['type']}, not INT8: convert it to full int8")
    schema, _, graph = _subgraph(data)
    types = _names(schema.TensorType)
    non_integer = sorted(
        {types[graph.Tensors(i).Type()] for i in range(graph.TensorsLength())} - _INTEGER_TENSOR_TYPES
    )
    if non_integer:
        raise UserError(f"{name}: it holds {non_integer} tensors, so part of it would run in float")
    return operators


# --------------------------------------------------------------------------- the interpreter


def _interpreter(data: bytes, arena_size: int):
    from tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=arena_size)


def _captured_fd2(action: Callable[[], None]) -> str:
    """What ``action`` writes to file descriptor 2 (C++ code included), as text."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            action()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return capture.read().decode(errors="replace")


@dataclass(frozen=True)
class ArenaUsage:
    total: int  # bytes of the arena in use: head + tail
    head: int  # activations (the memory planner's non-persistent buffers)
    tail: int  # persistent allocations: tensor structs, quantization data, kernel buffers

    def to_dict(self) -> dict:
        return asdict(self)


def parse_arena_usage(text: str) -> ArenaUsage:
    """The arena total, head and tail of ``print_allocations()`` output."""
    found = {kind: int(value) for kind, value in _ARENA_LINE.findall(text)}
    missing = sorted({"total", "head", "tail"} - set(found))
    if missing:
        raise ValueError(
            f"no 'Arena allocation {missing[0]}' line in the TFLM allocation report: {text[:200]!r}"
        )
    return ArenaUsage(total=found["total"], head=found["head"], tail=found["tail"])


def arena_usage(data: bytes, arena_size: int = DEFAULT_ARENA_BYTES) -> ArenaUsage:
    """What the recording allocator used of an arena of ``arena_size`` bytes for this model."""
    interpreter = _interpreter(data, arena_size)
    return parse_arena_usage(_captured_fd2(interpreter.print_allocations))


def _builds(data: bytes, arena_size: int) -> bool:
    """Whether the interpreter can be built in ``arena_size`` bytes, tried in a forked child.

    Some arenas that are too small crash TFLM's allocator (a segmentation fault, seen with about
    half the needed bytes) instead of raising; in a child, a crash is one more failure.
    """
    child = os.fork()
    if child == 0:  # the child: build, report by exit status, never return into the caller's code
        status = 1
        try:
            faulthandler.disable()  # a crash here is an answer, not a bug to report
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)  # TFLM reports a failed allocation on fd 2 as well as by exception
            _interpreter(data, arena_size)
            status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(wait_status) == 0


def smallest_arena(data: bytes, upper: int = DEFAULT_ARENA_BYTES) -> int:
    """The smallest ``arena_size`` (bytes) the interpreter can be built with, by bisection.

    What an application must give TFLM: the recorded total, or more where planning needs more.
    """
    if not _builds(data, upper):
        raise UserError(f"the model needs a TFLM arena larger than {upper} bytes")
    low, high = 0, upper  # low fails (nothing fits in 0 bytes), high builds
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _builds(data, middle) else (middle, high)
    return high


def _quantize(samples: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    # Round half to even, as ONNX Runtime's QuantizeLinear does, so both runtimes see the same ints.
    return np.clip(np.rint(samples / scale) + zero_point, -128, 127).astype(np.int8)


def run_tflm(data: bytes, inputs: np.ndarray, arena_size: int = DEFAULT_ARENA_BYTES) -> np.ndarray:
    """Float logits [N, classes] of float32 inputs [N, C, T], one TFLM invoke per sample."""
    io = tflite_io(data)
    expected = tuple(io["input"]["shape"][1:])
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.shape[1:] != expected:
        raise ValueError(f"inputs of shape {inputs.shape[1:]} per sample; the model takes {expected}")
    quantized = _quantize(inputs, io["input"]["scale"], io["input"]["zero_point"])
    interpreter = _interpreter(data, arena_size)
    outputs = []
    for sample in quantized:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0)[0].copy())
    output = io["output"]
    return (np.stack(outputs).astype(np.float32) - output["zero_point"]) * np.float32(output["scale"])


def time_per_inference(
    data: bytes,
    sample: np.ndarray,
    *,
    repeats: int = 200,
    warmup: int = 20,
    arena_size: int = DEFAULT_ARENA_BYTES,
) -> dict:
    """Median and quartiles (ms) of one invoke on this host, reference kernels, one float sample [C, T]."""
    io = tflite_io(data)
    interpreter = _interpreter(data, arena_size)
    interpreter.set_input(
        _quantize(np.asarray(sample, np.float32)[None], io["input"]["scale"], io["input"]["zero_point"]), 0
    )
    for _ in range(warmup):
        interpreter.invoke()
    times_ms = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        interpreter.invoke()
        times_ms.append((time.perf_counter_ns() - started) / 1e6)
    low, median, high = statistics.quantiles(times_ms, n=4)
    return {"host_ms_median": median, "host_ms_q1": low, "host_ms_q3": high, "repeats": repeats}


def measure_tflite(data: bytes, sample: np.ndarray, *, name: str = "the model", repeats: int = 200) -> dict:
    """Everything measured of one .tflite: ops, I/O, flash, arena (with its bisection check), host time."""
    operators = check_tflm_int8(data, name)
    usage = arena_usage(data)
    return {
        "operators": operators,
        "io": tflite_io(data),
        "flash_bytes": len(data),
        "arena_bytes": usage.total,
        "arena_head_bytes": usage.head,
        "arena_tail_bytes": usage.tail,
        "arena_bytes_by_bisection": smallest_arena(data, upper=2 * usage.total + 4096),
        **time_per_inference(data, sample, repeats=repeats),
        "time_is": "host reference kernels (x86), not a microcontroller",
    }
