"""Broken inputs: each gives one line that names the file (or config key), the problem and the fix.

The table below runs ``prepare_dataset`` on every kind of broken input and checks the exact message.
A few representative cases also run the way the workflow runs the data stage (a separate Python
process inside ``job_logging``): the user sees only ``prunequant: error: ...``, the log keeps the
traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from prunequant.data import prepare_dataset
from prunequant.errors import UserError

# librosa imports audioread, which imports stdlib modules deprecated in Python 3.13.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread.*")

SETTINGS = dict(length=8, length_method="resample", val_fraction=0.25, test_fraction=0.25, seed=0)
SR = 8000  # Hz
AUDIO = dict(label_from="folder", sample_rate=SR, n_mfcc=13, hop_length=80, n_fft=256)
NPZ_FIX = "numpy.savez(path, X=X, y=y)"
TS_HEADER = """\
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
"""
TS_LINE_FORMAT = "one case per line after @data: 'v1,v2,...:v1,v2,...:label'"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# A case builds its broken input under a folder and returns (prepare_dataset data keys, message).
Case = Callable[[Path], tuple[dict, str]]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__] = function
    return function


def _xy(n: int = 12, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 2, 8)).astype(np.float32), np.arange(n) % classes


def _npz(tmp: Path, name: str = "data.npz", **arrays) -> Path:
    path = tmp / name
    np.savez(path, **arrays)
    return path


def _npz_source(path: Path) -> dict:
    return {"source": "npz", "npz_path": str(path)}


def _ts_source(path: Path) -> dict:
    return {"source": "ts", "ts_train": str(path)}


def _audio_folder(tmp: Path, bad_bytes: bytes | None = None, bad_clip: np.ndarray | None = None) -> Path:
    """root/<class>/good_<i>.wav for two classes, plus root/no/bad.wav from raw bytes or samples.

    bad.wav sorts first, so it fails before any good file needs librosa (slow to import).
    """
    root = tmp / "audio"
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(800) / SR)).astype(np.float32)
    for label in ("no", "yes"):
        for i in range(4):
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / f"good_{i}.wav", tone, SR)
    if bad_bytes is not None:
        (root / "no" / "bad.wav").write_bytes(bad_bytes)
    if bad_clip is not None:
        sf.write(root / "no" / "bad.wav", bad_clip, SR)
    return root


def _audio_source(root: Path) -> dict:
    return {"source": "audio", "audio": {**AUDIO, "root": str(root)}}


# --------------------------------------------------------------------------- .npz files


@case
def npz_missing(tmp):
    path = tmp / "absent.npz"
    return _npz_source(path), f"{path}: file not found; set data.npz_path to an .npz archive that exists"


@case
def npz_is_a_folder(tmp):
    return _npz_source(tmp), f"{tmp}: is a folder, not a file; set data.npz_path to an .npz archive"


@case
def npz_empty_file(tmp):
    path = tmp / "empty.npz"
    path.write_bytes(b"")
    return _npz_source(path), (
        f"{path}: file is empty (0 bytes); set data.npz_path to an .npz archive that holds data"
    )


@case
def npz_truncated(tmp):
    path = _npz(tmp, "whole.npz", X=_xy()[0], y=_xy()[1])
    cut = tmp / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return _npz_source(cut), (
        f"{cut}: is a damaged .npz archive (truncated or corrupt); write it again with {NPZ_FIX}"
    )


@case
def npz_corrupt_compressed_member(tmp):
    path = tmp / "packed.npz"
    np.savez_compressed(path, X=_xy()[0], y=_xy()[1])
    damaged = bytearray(path.read_bytes())
    damaged[100:140] = bytes(40)  # inside the first member's deflate stream
    path.write_bytes(bytes(damaged))
    return _npz_source(path), (
        f"{path}: is a damaged .npz archive (truncated or corrupt); write it again with {NPZ_FIX}"
    )


@case
def npz_random_bytes(tmp):
    path = tmp / "noise.npz"
    path.write_bytes(b"\x01" + np.random.default_rng(0).bytes(255))
    return _npz_source(path), (
        f"{path}: is not an .npz archive (no zip header); set data.npz_path to a file written by {NPZ_FIX}"
    )


@case
def npz_is_etc_passwd(tmp):
    path = Path("/etc/passwd")
    if not path.is_file():
        pytest.skip("this system has no /etc/passwd")
    return _npz_source(path), (
        f"{path}: is not an .npz archive (no zip header); set data.npz_path to a file written by {NPZ_FIX}"
    )


@case
def npz_is_a_single_npy_array(tmp):
    path = tmp / "array.npz"
    with open(path, "wb") as handle:
        np.save(handle, _xy()[0])
    return _npz_source(path), (
        f"{path}: is a single .npy array, not an .npz archive; save X and y together with {NPZ_FIX}"
    )


@case
def npz_unreadable(tmp):
    if IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")
    path = _npz(tmp, X=_xy()[0], y=_xy()[1])
    path.chmod(0)
    return _npz_source(path), f"{path}: permission denied; make the file readable (chmod u+r {path})"


@case
def npz_x_four_dimensional(tmp):
    path = _npz(tmp, X=np.zeros((4, 1, 2, 3)), y=np.arange(4) % 2)
    return _npz_source(path), (
        f"{path}: X has shape (4, 1, 2, 3), expected [N, C, T] or [N, T]; "
        "reshape X to samples x channels x time"
    )


@case
def npz_x_one_dimensional(tmp):
    path = _npz(tmp, X=np.zeros(4), y=np.arange(4) % 2)
    return _npz_source(path), (
        f"{path}: X has shape (4,), expected [N, C, T] or [N, T]; reshape X to samples x channels x time"
    )


@case
def npz_x_and_y_lengths_differ(tmp):
    path = _npz(tmp, X=np.zeros((4, 1, 3)), y=np.arange(5) % 2)
    return _npz_source(path), (f"{path}: X has 4 samples but y has 5; give exactly one label per sample")


@case
def npz_x_holds_strings(tmp):
    path = _npz(tmp, X=np.full((4, 1, 3), "a"), y=np.arange(4) % 2)
    return _npz_source(path), f"{path}: X has dtype <U1, expected numbers; store X as a float array"


@case
def npz_object_arrays(tmp):
    path = _npz(tmp, X=np.zeros((2, 1, 3)), y=np.array(["a", "b"], dtype=object))
    return _npz_source(path), (
        f"{path}: holds object arrays; save plain numeric X and str/int y with {NPZ_FIX}"
    )


@case
def npz_nan_label(tmp):
    X, y = _xy()
    y = y.astype(float)
    y[5] = np.nan
    path = _npz(tmp, X=X, y=y)
    return _npz_source(path), (
        f"{path} [X, y]: label of sample 5 is nan (1 non-finite label(s) in all); every label must be a "
        "finite class value: fix or drop those samples"
    )


@case
def npz_inf_in_series(tmp):
    X, y = _xy()
    X[3, 1, 4] = np.inf
    path = _npz(tmp, X=X, y=y)
    return _npz_source(path), f"{path} [X, y]: sample 3 contains NaN or inf; clean or impute it first"


@case
def npz_one_class(tmp):
    path = _npz(tmp, X=_xy()[0], y=np.zeros(12, dtype=int))
    return _npz_source(path), f"{path}: needs at least 2 classes, found ['0']; add samples of other classes"


@case
def npz_three_samples_three_classes(tmp):
    X, y = _xy(n=3)
    path = _npz(tmp, X=X, y=y)
    return _npz_source(path), (
        f"{path}: class '0' has 0 sample(s) in the val split (train 1, val 0, test 0), fewer than "
        "data.min_class_samples=1; add more samples of class '0'"
    )


# --------------------------------------------------------------------------- .ts files


@case
def ts_empty_file(tmp):
    path = tmp / "Empty_TRAIN.ts"
    path.write_text("")
    return _ts_source(path), (
        f"{path}: file is empty (0 bytes); set data.ts_train to a UEA/UCR .ts file that holds data"
    )


@case
def ts_binary_garbage(tmp):
    path = tmp / "Garbage_TRAIN.ts"
    path.write_bytes(b"@\xff\xfe" + np.random.default_rng(0).bytes(64))
    return _ts_source(path), (
        f"{path}: is not a text file (byte 1 is not UTF-8); set data.ts_train to a UEA/UCR .ts file"
    )


@case
def ts_plain_text(tmp):
    path = tmp / "Notes_TRAIN.ts"
    path.write_text("hello world\nthis is not a time series\n")
    return _ts_source(path), (
        f"{path}:1: expected a '@' header line before @data, got 'hello world'; is this a UEA/UCR .ts file?"
    )


@case
def ts_without_data_section(tmp):
    path = tmp / "Header_TRAIN.ts"
    path.write_text(TS_HEADER.replace("@data\n", ""))
    return _ts_source(path), (
        f"{path}: no @data line; a UEA/UCR .ts file has its '@' headers, then @data, then cases"
    )


@case
def ts_undeclared_label(tmp):
    path = tmp / "Tiny_TRAIN.ts"
    path.write_text(TS_HEADER + "1,2,3:4,5,6:a\n7,8:9,10:c\n")
    return _ts_source(path), (
        f"{path}:10: label 'c' is not declared in @classLabel ['a', 'b']; "
        "fix the label or add it to the @classLabel line"
    )


@case
def ts_unparsable_value(tmp):
    path = tmp / "Tiny_TRAIN.ts"
    path.write_text(TS_HEADER + "1,x,3:4,5,6:a\n7,8:9,10:b\n")
    return _ts_source(path), (
        f"{path}: cannot be parsed as a UEA/UCR .ts file (ValueError: could not convert string to float: "
        f"'x'); check its headers and write {TS_LINE_FORMAT}"
    )


@case
def ts_channels_of_different_lengths(tmp):
    path = tmp / "Tiny_TRAIN.ts"
    path.write_text(TS_HEADER + "1,2,3:4,5,6:a\n7,8,9:10,11:b\n")
    return _ts_source(path), (
        f"{path}:10: channels have different lengths [2, 3]; give every channel of a case the same length"
    )


@case
def ts_is_a_folder(tmp):
    return _ts_source(tmp), f"{tmp}: is a folder, not a file; set data.ts_train to a UEA/UCR .ts file"


# --------------------------------------------------------------------------- .wav files


@case
def wav_corrupt(tmp):
    root = _audio_folder(tmp, bad_bytes=b"RIFF" + np.random.default_rng(0).bytes(200))
    return _audio_source(root), (
        f"{root / 'no' / 'bad.wav'}: cannot be decoded as audio (corrupt or not a WAV file); "
        "re-encode it as PCM WAV or remove it"
    )


@case
def wav_empty_file(tmp):
    root = _audio_folder(tmp, bad_bytes=b"")
    return _audio_source(
        root
    ), f"{root / 'no' / 'bad.wav'}: file is empty (0 bytes); record it again or remove it"


@case
def wav_without_samples(tmp):
    root = _audio_folder(tmp, bad_clip=np.zeros(0, dtype=np.float32))
    return _audio_source(
        root
    ), f"{root / 'no' / 'bad.wav'}: holds no audio samples; record it again or remove it"


@case
def wav_unreadable(tmp):
    if IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")
    root = _audio_folder(tmp, bad_clip=np.zeros(800, dtype=np.float32))
    bad = root / "no" / "bad.wav"
    bad.chmod(0)
    return _audio_source(root), f"{bad}: permission denied; make the file readable (chmod u+r {bad})"


@case
def wav_root_missing(tmp):
    root = tmp / "no_such_folder"
    return _audio_source(root), (
        f"config key 'data.audio.root': audio folder not found: {root}; set it to a folder"
    )


# --------------------------------------------------------------------------- settings


@case
def fraction_out_of_range(tmp):
    path = _npz(tmp, X=_xy()[0], y=_xy()[1])
    return {**_npz_source(path), "val_fraction": 1.0}, (
        "config key 'data.val_fraction': must lie strictly between 0 and 1, got 1.0"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_input_gives_one_exact_line(tmp_path, name):
    data_keys, expected = CASES[name](tmp_path)
    assert "\n" not in expected
    with pytest.raises(UserError, match=f"^{re.escape(expected)}$"):
        prepare_dataset(**{**SETTINGS, **data_keys})


def test_the_table_covers_enough_cases():
    assert len(CASES) >= 20


# --------------------------------------------------------------------------- as the workflow runs it

STAGE = """
import json, sys
from prunequant.data import prepare_dataset
from prunequant.workflow.jobs import job_logging

with job_logging(sys.argv[1]):
    prepare_dataset(**json.loads(sys.argv[2]))
"""


@pytest.mark.parametrize(
    "name", ["npz_truncated", "ts_binary_garbage", "wav_corrupt", "npz_three_samples_three_classes"]
)
def test_data_stage_prints_one_line_and_logs_the_traceback(tmp_path, name):
    data_keys, expected = CASES[name](tmp_path)
    log = tmp_path / "logs" / "prepare_data.log"
    stage = subprocess.run(
        [sys.executable, "-c", STAGE, str(log), json.dumps({**SETTINGS, **data_keys})],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stage.returncode == 1
    assert stage.stderr == f"prunequant: error: {expected}\n"
    assert stage.stdout == ""
    text = log.read_text()
    assert "Traceback" in text and f"prunequant.errors.UserError: {expected}" in text
