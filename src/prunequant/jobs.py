"""What every workflow job does around its real work: logging and thread limits."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["job_logging", "write_json", "read_json"]


@contextlib.contextmanager
def job_logging(log_path: str | os.PathLike, threads: int | None = None) -> Iterator[None]:
    """Send stdout, stderr, warnings and any traceback of the job to its log file."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", buffering=1) as log:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        logging.basicConfig(stream=log, level=logging.INFO, force=True)
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout, sys.stderr = saved


def write_json(data: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
