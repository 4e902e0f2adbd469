import sys
import warnings

import pytest

from prunequant.jobs import job_logging, read_json, write_json


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


def test_json_round_trip(tmp_path):
    write_json({"b": 1, "a": [1.5, "x"]}, tmp_path / "deep" / "m.json")
    assert read_json(tmp_path / "deep" / "m.json") == {"a": [1.5, "x"], "b": 1}
