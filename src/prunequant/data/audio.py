"""The audio source: a folder of ``.wav`` files turned into labelled MFCC series.

librosa and soundfile are imported only when a file is decoded, so importing this module stays
light: the workflow lists the ``.wav`` files (:func:`wav_files`) and plans one fold per group
(:func:`group_names`) before any job runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from prunequant.data.raw import RawDataset, _check_positive, _raw_split
from prunequant.errors import UserError


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
            raise UserError(
                f"config key 'data.audio': unknown audio options {unknown}; known: {sorted(known)}"
            )
        missing = sorted(f.name for f in fields(cls) if f.default is MISSING and f.name not in options)
        if missing:
            raise UserError(f"config key 'data.audio': missing audio options {missing}; set them")
        return cls(**options)


def _compile(pattern: str | None, name: str) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise UserError(
            f"config key 'data.audio.{name}': {pattern!r} is not a valid regular expression: {err}"
        ) from err
    if compiled.groups < 1:
        raise UserError(
            f"config key 'data.audio.{name}': {pattern!r} needs a capture group, e.g. '(spk\\d+)_'"
        )
    return compiled


def _capture(pattern: re.Pattern, text: str, name: str, group: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise UserError(
            f"config key 'data.audio.{name}': {pattern.pattern!r} does not match file {text!r}; "
            "fix the pattern or move the file"
        )
    value = match.group(group) if group in pattern.groupindex else match.group(1)
    if not value:
        raise UserError(
            f"config key 'data.audio.{name}': {pattern.pattern!r} captured nothing in file {text!r}; "
            "fix the pattern"
        )
    return value


def wav_files(root: Path) -> list[Path]:
    """Every .wav file under ``root``, in a stable order (by path relative to ``root``)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"config key 'data.audio.root': audio folder not found: {root}; set it to a folder")
    files = sorted(
        (p for p in root.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise UserError(
            f"{root}: no .wav files found under this folder; add .wav files or fix data.audio.root"
        )
    return files


def group_names(data_settings: dict) -> list[str]:
    """Sorted group names (e.g. speakers) of the ``data`` settings' audio source; ``[]`` without groups.

    Computed from the file names and ``group_regex`` alone: no audio is decoded, so the workflow can
    plan one leave-one-group-out fold per group before any job runs.
    """
    audio = data_settings.get("audio") or {}
    if data_settings.get("source") != "audio" or audio.get("group_regex") is None:
        return []
    pattern = _compile(audio["group_regex"], "group_regex")
    root = Path(audio["root"])
    return sorted(
        {_capture(pattern, p.relative_to(root).as_posix(), "group_regex", "group") for p in wav_files(root)}
    )


def _audio_label(rel: str, label_from: str, label_pattern: re.Pattern | None) -> str:
    if label_pattern is not None:
        return _capture(label_pattern, rel, "label_regex", "label")
    folder, _, _ = rel.rpartition("/")
    if not folder:
        raise UserError(
            f"file {rel!r} lies directly in the audio root, so it has no class folder: "
            "move it into a folder named after its class, or use label_from='regex'"
        )
    return folder


def _decode(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate``; one-line errors for files that cannot be decoded."""
    import soundfile

    try:
        signal, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except PermissionError as err:
        raise UserError(f"{path}: permission denied; make the file readable (chmod u+r {path})") from err
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        if os.path.getsize(path) == 0:
            raise UserError(f"{path}: file is empty (0 bytes); record it again or remove it") from err
        raise UserError(
            f"{path}: cannot be decoded as audio (corrupt or not a WAV file); "
            "re-encode it as PCM WAV or remove it"
        ) from err
    if signal.shape[0] == 0:
        raise UserError(f"{path}: holds no audio samples; record it again or remove it")
    signal = signal.mean(axis=1)  # mono, as librosa.load(mono=True) does
    if file_rate != sample_rate:
        import librosa

        signal = librosa.resample(signal, orig_sr=file_rate, target_sr=sample_rate, res_type="soxr_hq")
    return signal


def _fit_frames(signal: np.ndarray, frames: int, hop_length: int) -> np.ndarray:
    """Zero-pad (silence) or crop the end so centred MFCC frames number exactly ``frames``.

    With ``center=True`` librosa yields ``1 + n_samples // hop_length`` frames; ``(frames - 1) * hop_length``
    samples give exactly ``frames``.
    """
    n_samples = (frames - 1) * hop_length
    if len(signal) >= n_samples:
        return signal[:n_samples]
    return np.concatenate([signal, np.zeros(n_samples - len(signal), dtype=signal.dtype)])


def _mfcc(
    path: Path, *, sample_rate: int, n_mfcc: int, hop_length: int, n_fft: int, frames: int | None = None
) -> np.ndarray:
    import librosa

    signal = _decode(path, sample_rate)
    if frames is not None:
        signal = _fit_frames(signal, frames, hop_length)
    features = librosa.feature.mfcc(
        y=signal, sr=sample_rate, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft, center=True
    )
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
    frames: int | None = None,
) -> RawDataset:
    """Every ``.wav`` under ``root`` (sorted by relative path) as an MFCC series ``[n_mfcc, frames]``.

    With ``frames``, each waveform is padded with silence or cropped at its end so that its MFCCs
    have exactly ``frames`` frames; without it, a clip keeps its own number of frames. Each sample's
    id is its path relative to ``root``.
    """
    if label_from not in ("folder", "regex"):
        raise UserError(
            f"config key 'data.audio.label_from': must be 'folder' or 'regex', got {label_from!r}"
        )
    if label_from == "regex" and label_regex is None:
        raise UserError(
            "config key 'data.audio.label_regex': label_from='regex' needs label_regex, e.g. '^(\\w+)/'"
        )
    _check_positive("data.audio.", sample_rate=sample_rate, n_mfcc=n_mfcc, hop_length=hop_length, n_fft=n_fft)
    if frames is not None:
        _check_positive(length=frames)
    label_pattern = _compile(label_regex, "label_regex") if label_from == "regex" else None
    group_pattern = _compile(group_regex, "group_regex")
    root = Path(root)
    series, labels, groups, ids = [], [], [], []
    for path in wav_files(root):
        rel = path.relative_to(root).as_posix()
        labels.append(_audio_label(rel, label_from, label_pattern))
        if group_pattern is not None:
            groups.append(_capture(group_pattern, rel, "group_regex", "group"))
        ids.append(rel)
        series.append(
            _mfcc(
                path,
                sample_rate=sample_rate,
                n_mfcc=n_mfcc,
                hop_length=hop_length,
                n_fft=n_fft,
                frames=frames,
            )
        )
    train = _raw_split(
        series, labels, groups if group_pattern is not None else None, where=str(root), ids=ids
    )
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
