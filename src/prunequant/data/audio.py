"""The audio source: a folder of ``.wav`` files turned into labelled MFCC series.

librosa is imported only when a file is decoded, so importing this module stays light.
"""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.data.raw import RawDataset, _check_positive, _raw_split


@dataclass(frozen=True)
class AudioOptions:
    """How a folder of ``.wav`` files becomes labelled MFCC series."""

    root: str  # folder searched recursively for .wav files
    label_from: str  # "folder": parent folder relative to root; "regex": label_regex on the relative path
    sample_rate: int  # Hz; files are resampled to it
    n_mfcc: int  # MFCC coefficients = channels of the series
    hop_length: int  # samples between frames
    n_fft: int  # samples per FFT window
    label_regex: str | None = None  # first capture group (or group "label") is the label
    group_regex: str | None = None  # first capture group is a group key, e.g. a speaker id

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> AudioOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown audio options {unknown}; known: {sorted(known)}")
        missing = sorted(f.name for f in fields(cls) if f.default is MISSING and f.name not in options)
        if missing:
            raise ValueError(f"missing audio options {missing}")
        return cls(**options)


def _compile(pattern: str | None, name: str) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{name} {pattern!r} is not a valid regular expression: {err}") from err
    if compiled.groups < 1:
        raise ValueError(f"{name} {pattern!r} needs a capture group, e.g. '(spk\\d+)_'")
    return compiled


def _capture(pattern: re.Pattern, text: str, name: str, group: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"{name} {pattern.pattern!r} does not match file {text!r}")
    value = match.group(group) if group in pattern.groupindex else match.group(1)
    if not value:
        raise ValueError(f"{name} {pattern.pattern!r} captured nothing in file {text!r}")
    return value


def wav_files(root: Path) -> list[Path]:
    """Every .wav file under ``root``, in a stable order (by path relative to ``root``)."""
    if not root.is_dir():
        raise ValueError(f"audio folder not found: {root}")
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise ValueError(f"no .wav files found under {root}")
    return files


def _audio_label(rel: str, label_from: str, label_pattern: re.Pattern | None) -> str:
    if label_pattern is not None:
        return _capture(label_pattern, rel, "label_regex", "label")
    folder, _, _ = rel.rpartition("/")
    if not folder:
        raise ValueError(
            f"file {rel!r} lies directly in the audio root, so it has no class folder: "
            "move it into a folder named after its class, or use label_from='regex'"
        )
    return folder


def _mfcc(path: Path, *, sample_rate: int, n_mfcc: int, hop_length: int, n_fft: int) -> np.ndarray:
    import librosa

    try:
        signal, sr = librosa.load(path, sr=sample_rate, mono=True)
    except Exception as err:  # librosa surfaces decoder-specific exception types
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    if signal.size == 0:
        raise ValueError(f"audio file {path} is empty")
    features = librosa.feature.mfcc(y=signal, sr=sr, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft)
    return features.astype(np.float32)


def load_audio_folder(
    root: str | os.PathLike,
    *,
    label_from: str,
    label_regex: str | None = None,
    group_regex: str | None = None,
    sample_rate: int,
    n_mfcc: int,
    hop_length: int,
    n_fft: int,
) -> RawDataset:
    """Every ``.wav`` under ``root`` (sorted by relative path) as an MFCC series ``[n_mfcc, frames]``."""
    if label_from not in ("folder", "regex"):
        raise ValueError(f"label_from must be 'folder' or 'regex', got {label_from!r}")
    if label_from == "regex" and label_regex is None:
        raise ValueError("label_from='regex' needs label_regex, e.g. '^(\\w+)/'")
    _check_positive(sample_rate=sample_rate, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft)
    label_pattern = _compile(label_regex, "label_regex") if label_from == "regex" else None
    group_pattern = _compile(group_regex, "group_regex")
    root = Path(root)
    series, labels, groups = [], [], []
    for path in wav_files(root):
        rel = path.relative_to(root).as_posix()
        labels.append(_audio_label(rel, label_from, label_pattern))
        if group_pattern is not None:
            groups.append(_capture(group_pattern, rel, "group_regex", "group"))
        series.append(_mfcc(path, sample_rate=sample_rate, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft))
    train = _raw_split(series, labels, groups if group_pattern is not None else None, where=str(root))
    options = AudioOptions(
        root=str(root),
        label_from=label_from,
        sample_rate=sample_rate,
        n_mfcc=n_mfcc,
        hop_length=hop_length,
        n_fft=n_fft,
        label_regex=label_regex,
        group_regex=group_regex,
    )
    return RawDataset(train=train, source={"kind": "audio", **asdict(options)})
