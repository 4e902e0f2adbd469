"""The data stage: load a labelled time-series source, split it, fix its length, standardise it.

Four sources feed one pipeline: a UEA/UCR set bundled with sktime, ``.ts`` files, an ``.npz``
archive, or a folder of ``.wav`` files turned into MFCCs. Each loader returns a :class:`RawDataset`
of variable-length float32 series ``[C, T_i]`` with string labels; :func:`prepare_dataset` turns
it into fixed-shape arrays ``[N, C, L]`` with integer labels, and :func:`save_dataset` writes them
with a metadata JSON that says where they came from.

Submodules, one job each:

- :mod:`prunequant.data.raw` — the raw containers :class:`RawSplit` and :class:`RawDataset`;
- :mod:`prunequant.data.sources` — ``.ts`` files, sets bundled with sktime, ``.npz`` archives;
- :mod:`prunequant.data.audio` — folders of ``.wav`` files as MFCC series (librosa loads lazily);
- :mod:`prunequant.data.splits` — train/val/test splitting;
- :mod:`prunequant.data.transforms` — fixed length, label encoding, standardisation;
- :mod:`prunequant.data.dataset` — :class:`PreparedDataset`: prepare, save, load.

Problems a user can fix (a bad file, a setting that leaves a class out of a split) raise a one-line
:class:`prunequant.errors.UserError` that names the file or config key, the problem and the fix.
"""

from __future__ import annotations

from prunequant.data.audio import AudioOptions, group_names, load_audio_folder
from prunequant.data.dataset import SOURCES, PreparedDataset, load_dataset, prepare_dataset, save_dataset
from prunequant.data.raw import RawDataset, RawSplit
from prunequant.data.sources import BUNDLED_DATASETS, load_bundled, load_npz, load_ts
from prunequant.data.splits import split_dataset
from prunequant.data.transforms import (
    LENGTH_METHODS,
    class_names,
    encode_labels,
    standardize,
    to_fixed_length,
)

__all__ = [
    "BUNDLED_DATASETS",
    "SOURCES",
    "LENGTH_METHODS",
    "RawSplit",
    "RawDataset",
    "AudioOptions",
    "PreparedDataset",
    "load_bundled",
    "load_ts",
    "load_npz",
    "load_audio_folder",
    "group_names",
    "to_fixed_length",
    "split_dataset",
    "class_names",
    "encode_labels",
    "standardize",
    "prepare_dataset",
    "save_dataset",
    "load_dataset",
]
