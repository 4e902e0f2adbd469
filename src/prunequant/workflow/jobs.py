"""What every workflow job does around its real work: its log, thread limit and error reporting."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

from prunequant.errors import UserError

__all__ = ["PEAK_MEMORY_PREFIX", "STAGE_SECONDS_PREFIX", "job_logging"]

# Last line of a successful job's log: the wall time spent inside job_logging. Benchmarks compare
# it with Snakemake's per-job time to measure what starting a job costs.
STAGE_SECONDS_PREFIX = "prunequant-stage-seconds:"
# The line before it: the job process's peak resident memory. Snakemake's benchmark files measure
# the process Snakemake started, which for a warm-started job (prunequant.workflow.warmstart) only waits.
PEAK_MEMORY_PREFIX = "prunequant-peak-memory-mb:"

# How many job_logging blocks are open: only the outermost one reports a UserError and exits, so a
# nested block cannot print the error line into its parent's log instead of onto the real stderr.
_open_jobs = 0


def _skip_final_garbage_collection() -> None:
    """At exit, move every live object out of the collector's reach before Python's last collection.

    A job process ends right after its stage. The interpreter's final collections then walk
    every object torch and the other libraries made, a sizeable part of a short job
    (bench/results/overhead.txt). Nothing is lost by skipping that walk: the outputs are
    written and closed inside the job, and atexit handlers and stream flushes still run.
    """
    gc.freeze()


def _peak_memory_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


@contextlib.contextmanager
def _root_logging_to(stream) -> Iterator[None]:
    """Route the root logger and captured warnings to ``stream``; restore both afterwards.

    ``logging.basicConfig(force=True)`` would leave its handler attached to ``stream`` once the
    job is over, and a later log call would then write to a closed file.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        handler.close()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextlib.contextmanager
def job_logging(log_path: str | os.PathLike, threads: int | None = None) -> Iterator[None]:
    """Send stdout, stderr, warnings and any traceback of the job to its log file.

    A :class:`~prunequant.errors.UserError` is reported as the single line
    ``prunequant: error: <message>`` on the real stderr and ends the job with ``SystemExit(1)``;
    its traceback goes to the log only. Any other exception is logged and re-raised. A job that
    succeeds ends its log with ``prunequant-peak-memory-mb: <peak resident memory>`` and
    ``prunequant-stage-seconds: <seconds spent inside the block>``.
    ``threads`` sets torch's intra-op thread count if the job's script has imported torch.
    """
    global _open_jobs
    atexit.unregister(_skip_final_garbage_collection)  # one registration, however many jobs
    atexit.register(_skip_final_garbage_collection)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    user_error = None
    outermost = _open_jobs == 0
    with log_path.open("w", buffering=1) as log:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        _open_jobs += 1
        try:
            with _root_logging_to(log):
                # Only a job that has imported torch gets its thread count: importing it here
                # would cost an ONNX-only job (quantize) two seconds for a setting it never uses.
                torch = sys.modules.get("torch")
                if threads is not None and torch is not None:
                    torch.set_num_threads(threads)
                started = time.perf_counter()
                try:
                    yield
                except UserError as error:
                    traceback.print_exc(file=log)
                    if not outermost:
                        raise
                    user_error = error
                except BaseException:
                    traceback.print_exc(file=log)
                    raise
                else:
                    seconds = time.perf_counter() - started
                    print(f"{PEAK_MEMORY_PREFIX} {_peak_memory_mb():.1f}", file=log)
                    print(f"{STAGE_SECONDS_PREFIX} {seconds:.6f}", file=log)
        finally:
            _open_jobs -= 1
            sys.stdout, sys.stderr = saved
    if user_error is not None:
        print(f"prunequant: error: {_one_line(user_error)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from user_error
