import logging
import subprocess
import sys
import warnings

import pytest

from prunequant.errors import UserError
from prunequant.workflow.jobs import PEAK_MEMORY_PREFIX, STAGE_SECONDS_PREFIX, job_logging


def test_output_warnings_and_tracebacks_land_in_the_log(tmp_path):
    log = tmp_path / "logs" / "job.log"
    stdout = sys.stdout
    with pytest.raises(ZeroDivisionError):
        with job_logging(log):
            print("Epoch: 1")
            print("progress", file=sys.stderr)
            warnings.warn("something odd", stacklevel=1)
            raise ZeroDivisionError("while training")
    assert sys.stdout is stdout
    text = log.read_text()
    assert "Epoch: 1" in text and "progress" in text and "something odd" in text
    assert "Traceback" in text and "ZeroDivisionError" in text
    assert STAGE_SECONDS_PREFIX not in text  # only a job that succeeds reports its time


def test_user_error_is_one_line_on_stderr_and_a_traceback_in_the_log(tmp_path, capsys):
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit) as info:
        with job_logging(log):
            print("loading")
            raise UserError("data.npz: is not an .npz archive; fix it")
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert captured.err == "prunequant: error: data.npz: is not an .npz archive; fix it\n"
    assert captured.out == ""
    text = log.read_text()
    assert "loading" in text and "Traceback" in text and "UserError: data.npz" in text


def test_nested_job_logging_reports_a_user_error_once(tmp_path, capsys):
    with pytest.raises(SystemExit):
        with job_logging(tmp_path / "outer.log"):
            with job_logging(tmp_path / "inner.log"):
                raise UserError("bad setting")
    assert capsys.readouterr().err == "prunequant: error: bad setting\n"


def test_no_logging_handler_is_left_on_the_closed_log(tmp_path, capfd):
    root = logging.getLogger()
    handlers_before = root.handlers[:]
    with job_logging(tmp_path / "job.log"):
        logging.getLogger("prunequant.test").info("inside the job")
    logging.getLogger("prunequant.test").warning("after the job")
    assert root.handlers == handlers_before
    assert "Logging error" not in capfd.readouterr().err
    assert "inside the job" in (tmp_path / "job.log").read_text()
    assert "after the job" not in (tmp_path / "job.log").read_text()


def test_successful_job_ends_its_log_with_its_peak_memory_and_stage_time(tmp_path):
    log = tmp_path / "job.log"
    with job_logging(log):
        ballast = bytearray(64 * 2**20)  # 64 MiB, touched: the peak must count it
        ballast[::4096] = b"x" * len(ballast[::4096])
        print("working")
    *_, memory, last = log.read_text().splitlines()
    assert last.startswith(STAGE_SECONDS_PREFIX + " ")
    assert float(last.removeprefix(STAGE_SECONDS_PREFIX)) >= 0.0
    assert memory.startswith(PEAK_MEMORY_PREFIX + " ")
    assert float(memory.removeprefix(PEAK_MEMORY_PREFIX)) >= 64


@pytest.mark.parametrize("imports_torch", [False, True])
def test_threads_reach_torch_only_in_a_job_that_imported_it(tmp_path, imports_torch):
    # A fresh interpreter: this test process has imported torch long ago.
    code = f"""
import sys
{"import torch; torch.set_num_threads(2)" if imports_torch else ""}
from prunequant.workflow.jobs import job_logging
with job_logging({str(tmp_path / "job.log")!r}, threads=1):
    pass
torch = sys.modules.get("torch")
print(torch.get_num_threads() if torch else "no torch")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ("1" if imports_torch else "no torch")


def test_a_job_process_skips_the_final_garbage_collection(tmp_path):
    # atexit runs handlers last-registered-first: this one runs after job_logging's.
    code = f"""
import atexit, gc
atexit.register(lambda: print(gc.get_freeze_count() > 0))
from prunequant.workflow.jobs import job_logging
with job_logging({str(tmp_path / "job.log")!r}):
    pass
print(gc.get_freeze_count() > 0)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
