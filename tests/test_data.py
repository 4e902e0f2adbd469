"""Tests for prunequant.data: sources, fixed length, splits, labels, scaling, files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from prunequant import data
from prunequant.data import RawDataset, RawSplit
from prunequant.data.sources import _bundled_dir
from prunequant.errors import UserError

# librosa imports audioread, which imports stdlib modules deprecated in Python 3.13.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread.*")

SR = 8000  # Hz, keeps the synthetic WAVs tiny
SPEAKERS = ("spk1", "spk2", "spk3", "spk4")
PITCH = {"yes": 440.0, "no": 1320.0}  # Hz; one tone per class


# --------------------------------------------------------------------------- helpers


def _raw(labels, groups=None, *, length=5, channels=2, test_labels=None) -> RawDataset:
    """Series whose first value is the sample index, so a split can be traced back to its rows."""

    def make(labels, offset):
        series = [np.full((channels, length), offset + i, dtype=np.float32) for i in range(len(labels))]
        return RawSplit(series=series, labels=np.asarray(labels, dtype=str), groups=groups)

    test = None if test_labels is None else make(test_labels, 10_000)
    return RawDataset(train=make(labels, 0), test=test, source={"kind": "test"})


def _ids(split: RawSplit) -> list[int]:
    return [int(s[0, 0]) for s in split.series]


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _xy(n=12, channels=2, length=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, channels, length)).astype(np.float32), np.arange(n) % classes


TINY_TS = """\
# a hand-written multivariate, unequal-length problem
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3:4,5,6:a
7,8:9,10:b
1,1,1,1:2,2,2,2:a
"""


@pytest.fixture(scope="module")
def japanese_vowels() -> RawDataset:
    return data.load_bundled("JapaneseVowels")


@pytest.fixture(scope="module")
def wav_root(tmp_path_factory) -> Path:
    """root/<class>/<speaker>_<take>.wav: 2 classes x 4 speakers x 2 takes of 0.1 s sine tones."""
    root = tmp_path_factory.mktemp("audio")
    t = np.arange(int(0.1 * SR)) / SR
    for label, pitch in PITCH.items():
        for speaker in SPEAKERS:
            for take in range(2):
                path = root / label / f"{speaker}_{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, (0.5 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), SR)
    return root


AUDIO = dict(label_from="folder", sample_rate=SR, n_mfcc=13, hop_length=80, n_fft=256)


# --------------------------------------------------------------------------- bundled and .ts


def test_bundled_names_exist_in_sktime():
    for name in data.BUNDLED_DATASETS:
        folder = _bundled_dir(name)
        assert (folder / f"{name}_TRAIN.ts").is_file(), name
        assert (folder / f"{name}_TEST.ts").is_file(), name


def test_japanese_vowels_loads_with_its_published_shape(japanese_vowels):
    raw = japanese_vowels
    assert (len(raw.train), len(raw.test)) == (270, 370)
    assert raw.val is None
    assert {s.shape[0] for s in raw.train.series + raw.test.series} == {12}
    lengths = [s.shape[1] for s in raw.train.series + raw.test.series]
    assert (min(lengths), max(lengths)) == (7, 29)
    assert data.class_names(raw.train.labels, raw.test.labels) == [str(i) for i in range(1, 10)]
    assert all(s.dtype == np.float32 for s in raw.train.series)
    assert raw.source == {"kind": "bundled", "name": "JapaneseVowels"}


def test_unknown_bundled_name_says_what_to_do():
    with pytest.raises(UserError) as info:
        data.load_bundled("FordA")
    message = str(info.value)
    assert "FordA" in message and "JapaneseVowels" in message and "BasicMotions" in message
    assert "offline" in message and "'ts' source" in message


def test_handwritten_ts_file_loads(tmp_path):
    train = tmp_path / "Tiny_TRAIN.ts"
    train.write_text(TINY_TS)
    test = tmp_path / "Tiny_TEST.ts"
    test.write_text(TINY_TS)
    raw = data.load_ts(train, test)
    assert [s.shape for s in raw.train.series] == [(2, 3), (2, 2), (2, 4)]
    np.testing.assert_array_equal(raw.train.series[1], [[7, 8], [9, 10]])
    assert raw.train.labels.tolist() == ["a", "b", "a"]
    assert len(raw.test) == 3 and raw.given_splits() == ["train", "test"]


def test_missing_ts_file_is_named(tmp_path):
    missing = tmp_path / "nope_TRAIN.ts"
    with pytest.raises(UserError, match="nope_TRAIN.ts"):
        data.load_ts(missing)


# --------------------------------------------------------------------------- .npz


def test_npz_with_x_and_y(tmp_path):
    X, y = _xy()
    raw = data.load_npz(_write_npz(tmp_path / "d.npz", X=X, y=y))
    assert raw.given_splits() == ["train"]
    assert len(raw.train) == 12 and raw.train.series[0].shape == (2, 8)
    np.testing.assert_array_equal(raw.train.series[5], X[5])
    assert raw.train.labels.tolist() == [str(v) for v in y]


def test_npz_two_dimensional_x_is_one_channel(tmp_path):
    X, y = _xy(channels=1)
    raw = data.load_npz(_write_npz(tmp_path / "d.npz", X=X[:, 0, :], y=y))
    assert raw.train.series[0].shape == (1, 8)


def test_npz_predefined_splits_are_kept(tmp_path):
    X, y = _xy(n=30)
    path = _write_npz(
        tmp_path / "d.npz",
        X_train=X[:20],
        y_train=y[:20],
        X_val=X[20:24],
        y_val=y[20:24],
        X_test=X[24:],
        y_test=y[24:],
    )
    raw = data.load_npz(path)
    assert raw.given_splits() == ["train", "val", "test"]
    train, val, test = data.split_dataset(raw, val_fraction=0.5, test_fraction=0.5, seed=0)
    assert (len(train), len(val), len(test)) == (20, 4, 6)
    np.testing.assert_array_equal(val.series[0], X[20])


def test_npz_train_and_test_only_carves_val_from_train(tmp_path):
    X, y = _xy(n=30)
    path = _write_npz(tmp_path / "d.npz", X_train=X[:24], y_train=y[:24], X_test=X[24:], y_test=y[24:])
    raw = data.load_npz(path)
    train, val, test = data.split_dataset(raw, val_fraction=0.25, test_fraction=0.5, seed=0)
    assert len(test) == 6 and len(train) + len(val) == 24 and len(val) == 6


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"X": np.zeros((4, 1, 2, 3)), "y": np.arange(4) % 2}, r"\[N, C, T\] or \[N, T\]"),
        ({"X": np.zeros(4), "y": np.arange(4) % 2}, r"\[N, C, T\] or \[N, T\]"),
        ({"X": np.zeros((4, 1, 3)), "y": np.arange(5) % 2}, "4 samples but y has 5"),
        ({"X": np.array([[[0.0, np.nan]], [[1.0, 2.0]]]), "y": np.array([0, 1])}, "NaN or inf"),
        ({"X": np.array([[[0.0, np.inf]], [[1.0, 2.0]]]), "y": np.array([0, 1])}, "NaN or inf"),
        ({"X": np.zeros((4, 1, 3)), "y": np.zeros(4)}, "at least 2 classes"),
        ({"X": np.zeros((4, 1, 3))}, "has X but no y"),
        (
            {"X_train": np.zeros((4, 1, 3)), "y_train": np.arange(4) % 2, "X_val": np.zeros((2, 1, 3))},
            "has X_val but no y_val",
        ),
        ({"data": np.zeros((4, 1, 3))}, "expected arrays X and y"),
        ({"X": np.zeros((2, 1, 3)), "y": np.array(["a", "b"], dtype=object)}, "object arrays"),
        ({"X": np.zeros((2, 1, 3)), "y": np.arange(2), "X_train": np.zeros((2, 1, 3))}, "both X and X_train"),
    ],
)
def test_bad_npz_is_rejected_clearly(tmp_path, arrays, match):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=match):
        data.load_npz(path)


def test_missing_npz_is_named(tmp_path):
    with pytest.raises(UserError, match="absent.npz"):
        data.load_npz(tmp_path / "absent.npz")


# --------------------------------------------------------------------------- audio


def test_audio_labels_from_folder_and_mfcc_shape(wav_root):
    raw = data.load_audio_folder(wav_root, **AUDIO)
    assert len(raw.train) == 16 and raw.train.groups is None
    assert sorted(set(raw.train.labels)) == ["no", "yes"]
    assert raw.train.labels.tolist() == ["no"] * 8 + ["yes"] * 8  # sorted by relative path
    # 800 samples, hop 80, centred frames: 11 frames of 13 coefficients.
    assert {s.shape for s in raw.train.series} == {(13, 11)}
    assert raw.train.series[0].dtype == np.float32
    assert not np.allclose(raw.train.series[0], raw.train.series[-1])  # the two pitches differ


def test_audio_labels_from_regex_and_groups(wav_root):
    options = {**AUDIO, "label_from": "regex"}
    label_regex = r"(\w+)/spk\d+_(?P<label>\d)\.wav$"  # the named group wins over the first one
    raw = data.load_audio_folder(wav_root, **options, label_regex=label_regex, group_regex=r"(spk\d+)_")
    assert raw.train.labels.tolist() == ["0", "1"] * 8
    assert sorted(set(raw.train.groups)) == list(SPEAKERS)
    assert raw.source["group_regex"] == r"(spk\d+)_"


def test_audio_group_split_keeps_speakers_disjoint(wav_root):
    audio = {**AUDIO, "root": str(wav_root), "group_regex": r"(spk\d+)_"}
    raw = data.load_audio_folder(wav_root, **AUDIO, group_regex=r"(spk\d+)_")
    train, val, test = data.split_dataset(raw, val_fraction=0.3, test_fraction=0.25, seed=3)
    groups = [set(s.groups) for s in (train, val, test)]
    assert all(groups)
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert set().union(*groups) == set(SPEAKERS)
    prepared = data.prepare_dataset(
        source="audio",
        audio=audio,
        length=16,
        length_method="pad_crop",
        val_fraction=0.3,
        test_fraction=0.25,
        seed=3,
    )
    assert prepared.X_train.shape == (len(train), 13, 16)
    assert prepared.metadata()["split_sizes"] == {"train": len(train), "val": len(val), "test": len(test)}


def test_audio_folder_label_is_the_parent_path_relative_to_root(tmp_path):
    for rel in ("down/a.wav", "up/fast/b.wav", "up/slow/c.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / rel, np.zeros(800, dtype=np.float32), SR)
    raw = data.load_audio_folder(tmp_path, **AUDIO)
    assert raw.train.labels.tolist() == ["down", "up/fast", "up/slow"]


def test_audio_regex_that_misses_a_file_names_it(wav_root):
    with pytest.raises(UserError, match=r"does not match file 'no/spk1_0.wav'"):
        data.load_audio_folder(wav_root, **AUDIO, group_regex=r"(speaker\d+)")


def test_audio_errors(tmp_path, wav_root):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .wav files"):
        data.load_audio_folder(tmp_path / "empty", **AUDIO)
    flat = tmp_path / "flat"
    flat.mkdir()
    sf.write(flat / "a.wav", np.zeros(800, dtype=np.float32), SR)
    with pytest.raises(UserError, match="'a.wav' lies directly in the audio root"):
        data.load_audio_folder(flat, **AUDIO)
    with pytest.raises(UserError, match="needs label_regex"):
        data.load_audio_folder(wav_root, **{**AUDIO, "label_from": "regex"})
    with pytest.raises(UserError, match="must be 'folder' or 'regex'"):
        data.load_audio_folder(wav_root, **{**AUDIO, "label_from": "file"})
    with pytest.raises(UserError, match="unknown audio options"):
        data.AudioOptions.from_dict({**AUDIO, "root": str(wav_root), "n_mels": 40})


# --------------------------------------------------------------------------- fixed length


def test_resample_exact_values():
    series = [
        np.array([[0.0, 1.0, 2.0], [4.0, 2.0, 0.0]]),
        np.array([[3.0], [-1.0]]),
        np.array([[0, 1, 2, 3, 4]] * 2),
    ]
    out = data.to_fixed_length(series, 5, "resample")
    assert out.shape == (3, 2, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], [[0, 0.5, 1, 1.5, 2], [4, 3, 2, 1, 0]])
    np.testing.assert_allclose(out[1], [[3] * 5, [-1] * 5])
    np.testing.assert_allclose(data.to_fixed_length(series[2:], 3, "resample")[0], [[0, 2, 4]] * 2)


def test_pad_crop_exact_values():
    out = data.to_fixed_length([np.array([[1.0, 2.0]]), np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])], 3, "pad_crop")
    np.testing.assert_array_equal(out, [[[1, 2, 0]], [[1, 2, 3]]])
    assert out.dtype == np.float32


def test_fixed_length_errors():
    with pytest.raises(UserError, match="'data.length_method': must be one of"):
        data.to_fixed_length([np.zeros((1, 3))], 4, "stretch")
    with pytest.raises(UserError, match=r"different channel counts \[1, 2\]"):
        data.to_fixed_length([np.zeros((1, 3)), np.zeros((2, 3))], 4, "resample")
    with pytest.raises(UserError, match="'data.length': must be a positive integer"):
        data.to_fixed_length([np.zeros((1, 3))], 0, "pad_crop")


# --------------------------------------------------------------------------- splitting


def test_stratified_split_proportions_and_coverage():
    labels = np.repeat(["a", "b", "c"], 40)
    train, val, test = data.split_dataset(_raw(labels), val_fraction=0.2, test_fraction=0.25, seed=0)
    for split, per_class in ((test, 10), (val, 6), (train, 24)):
        counts = dict(zip(*np.unique(split.labels, return_counts=True), strict=True))
        assert counts == {"a": per_class, "b": per_class, "c": per_class}
    ids = _ids(train) + _ids(val) + _ids(test)
    assert sorted(ids) == list(range(120))
    for split in (train, val, test):  # series stay with their labels
        assert all(labels[i] == label for i, label in zip(_ids(split), split.labels, strict=True))


def test_split_is_deterministic_in_the_seed():
    raw = _raw(np.repeat(["a", "b"], 30))
    first = [_ids(s) for s in data.split_dataset(raw, val_fraction=0.2, test_fraction=0.2, seed=7)]
    again = [_ids(s) for s in data.split_dataset(raw, val_fraction=0.2, test_fraction=0.2, seed=7)]
    other = [_ids(s) for s in data.split_dataset(raw, val_fraction=0.2, test_fraction=0.2, seed=8)]
    assert first == again
    assert first != other


def test_a_split_per_run_redraws_train_and_val_and_keeps_test():
    raw = _raw(np.repeat(["a", "b"], 30))
    fixed = [_ids(s) for s in data.split_dataset(raw, val_fraction=0.2, test_fraction=0.2, seed=7)]
    runs = {
        split_seed: [
            _ids(s)
            for s in data.split_dataset(
                raw, val_fraction=0.2, test_fraction=0.2, seed=7, split_seed=split_seed
            )
        ]
        for split_seed in (0, 1)
    }
    assert runs[0][2] == runs[1][2] == fixed[2]  # the test split is the data seed's, whatever the run
    assert runs[0][1] != runs[1][1]  # validation differs between runs
    assert sorted(runs[0][0] + runs[0][1]) == sorted(fixed[0] + fixed[1])  # drawn from the same pool
    again = [
        _ids(s) for s in data.split_dataset(raw, val_fraction=0.2, test_fraction=0.2, seed=7, split_seed=1)
    ]
    assert again == runs[1]


def _class_counts(split: RawSplit) -> dict[str, int]:
    return {str(k): int(v) for k, v in zip(*np.unique(split.labels, return_counts=True), strict=True)}


def test_a_rare_class_does_not_switch_stratification_off_for_the_others():
    labels = ["a"] * 40 + ["b"] * 40 + ["rare"]
    train, val, test = data.split_dataset(_raw(labels), val_fraction=0.2, test_fraction=0.25, seed=0)
    assert _class_counts(test) == {"a": 10, "b": 10}
    assert _class_counts(val) == {"a": 6, "b": 6}
    assert _class_counts(train) == {"a": 24, "b": 24, "rare": 1}  # one sample cannot sit on two sides


def test_predefined_test_split_is_kept_and_val_comes_from_train():
    raw = _raw(np.repeat(["a", "b"], 10), test_labels=["a", "b", "b"])
    train, val, test = data.split_dataset(raw, val_fraction=0.2, test_fraction=0.9, seed=0)
    assert _ids(test) == [10_000, 10_001, 10_002]
    assert sorted(_ids(train) + _ids(val)) == list(range(20))
    assert sorted(val.labels.tolist()) == ["a", "a", "b", "b"]


def test_split_errors():
    with pytest.raises(UserError, match="non-empty"):
        data.split_dataset(_raw(["a"]), val_fraction=0.5, test_fraction=0.5, seed=0)
    with pytest.raises(UserError, match="only 1 group"):
        one_group = _raw(["a", "b", "a"], groups=np.array(["g"] * 3))
        data.split_dataset(one_group, val_fraction=0.5, test_fraction=0.5, seed=0)
    with pytest.raises(UserError, match="'data.val_fraction': must lie strictly between 0 and 1"):
        data.split_dataset(_raw(["a", "b"] * 5), val_fraction=0.0, test_fraction=0.5, seed=0)


# --------------------------------------------------------------------------- labels and scaling


def test_classes_are_sorted_over_all_splits():
    classes = data.class_names(np.array(["10", "2"]), np.array(["1"]), np.array(["2"]))
    assert classes == ["1", "2", "10"]
    assert data.class_names(np.array(["b", "a"]), np.array(["c"])) == ["a", "b", "c"]
    encoded = data.encode_labels(np.array(["10", "1", "2"]), classes)
    assert encoded.tolist() == [2, 0, 1] and encoded.dtype == np.int64
    with pytest.raises(ValueError, match=r"labels \['7'\] are not among"):
        data.encode_labels(np.array(["7"]), classes)


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    train = rng.normal(loc=[5.0, -3.0, 0.0], scale=[2.0, 0.5, 1.0], size=(20, 50, 3)).transpose(0, 2, 1)
    train[:, 2, :] = 7.0  # a constant channel
    val = rng.normal(loc=100.0, scale=30.0, size=(4, 3, 50))
    (train_s, val_s), (mean, std) = data.standardize(train, val)
    np.testing.assert_allclose(train_s.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_s[:, :2].std(axis=(0, 2)), 1.0, atol=1e-5)
    assert std[2] == 1.0 and np.all(train_s[:, 2] == 0.0)
    np.testing.assert_allclose(mean, train.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(val_s, (val - mean[None, :, None]) / std[None, :, None], rtol=1e-5)
    (_, _), (mean_other, std_other) = data.standardize(train, val * 10)
    np.testing.assert_array_equal(mean, mean_other)
    np.testing.assert_array_equal(std, std_other)
    assert train_s.dtype == val_s.dtype == np.float32


# --------------------------------------------------------------------------- prepare, save, load


def _prepare_npz(tmp_path, seed=0):
    X, y = _xy(n=40, classes=2)
    path = _write_npz(tmp_path / "src.npz", X=X, y=np.where(y == 0, "cat", "dog"))
    return data.prepare_dataset(
        source="npz",
        npz_path=path,
        length=6,
        length_method="resample",
        val_fraction=0.25,
        test_fraction=0.2,
        seed=seed,
    )


def test_prepare_npz_shapes_and_metadata(tmp_path):
    ds = _prepare_npz(tmp_path)
    assert ds.classes == ["cat", "dog"]
    assert ds.X_train.shape == (24, 2, 6) and ds.X_val.shape == (8, 2, 6) and ds.X_test.shape == (8, 2, 6)
    assert ds.X_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    meta = json.loads(json.dumps(ds.metadata()))
    assert meta["source"] == {"kind": "npz", "path": str(tmp_path / "src.npz"), "given_splits": ["train"]}
    assert meta["split_sizes"] == {"train": 24, "val": 8, "test": 8}
    assert meta["class_counts"]["test"] == {"cat": 4, "dog": 4}
    assert (meta["n_channels"], meta["length"], meta["length_method"], meta["seed"]) == (2, 6, "resample", 0)
    assert len(meta["standardization"]["mean"]) == 2


def test_prepare_bundled_japanese_vowels():
    ds = data.prepare_dataset(
        source="bundled",
        bundled_name="JapaneseVowels",
        length=32,
        length_method="resample",
        val_fraction=0.1,
        test_fraction=0.5,
        seed=0,
    )
    assert ds.X_train.shape[1:] == (12, 32) and len(ds.classes) == 9
    assert len(ds.y_test) == 370 and len(ds.y_train) + len(ds.y_val) == 270
    assert np.bincount(ds.y_val, minlength=9).tolist() == [3] * 9


def test_prepare_rejects_bad_arguments(tmp_path):
    common = dict(length=8, length_method="resample", val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(UserError, match="'data.source': must be one of"):
        data.prepare_dataset(source="csv", **common)
    with pytest.raises(UserError, match="'data.npz_path': source='npz' needs it"):
        data.prepare_dataset(source="npz", **common)
    with pytest.raises(UserError, match="missing audio options"):
        data.prepare_dataset(source="audio", audio={"root": str(tmp_path)}, **common)


def test_save_load_round_trip(tmp_path):
    ds = _prepare_npz(tmp_path)
    npz_path, meta_path = tmp_path / "out" / "dataset.data", tmp_path / "out" / "meta.json"
    data.save_dataset(ds, npz_path, meta_path)
    assert npz_path.is_file()  # the name is kept as given, no ".npz" appended
    back = data.load_dataset(npz_path)
    for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std"):
        original, loaded = getattr(ds, key), getattr(back, key)
        assert loaded.dtype == original.dtype
        np.testing.assert_array_equal(loaded, original)
    assert back.classes == ds.classes
    assert back.metadata() == ds.metadata()
    assert json.loads(meta_path.read_text()) == ds.metadata()
    with np.load(npz_path, allow_pickle=False) as archive:
        assert archive["classes"].dtype.kind == "U"


def test_load_dataset_rejects_other_archives(tmp_path):
    X, y = _xy()
    with pytest.raises(ValueError, match="not a prepared dataset"):
        data.load_dataset(_write_npz(tmp_path / "raw.npz", X=X, y=y))


# --------------------------------------------------------------------------- class coverage and labels

COMMON = dict(length=6, length_method="resample", val_fraction=0.25, test_fraction=0.25, seed=0)


def test_three_samples_of_three_classes_cannot_fill_three_splits(tmp_path):
    X, y = _xy(n=3, classes=3)
    path = _write_npz(tmp_path / "tiny.npz", X=X, y=y)
    expected = (
        f"{path}: class '0' has 0 sample(s) in the val split (train 1, val 0, test 0), fewer than "
        "data.min_class_samples=1; add more samples of class '0'"
    )
    with pytest.raises(UserError, match=f"^{re.escape(expected)}$"):
        data.prepare_dataset(source="npz", npz_path=path, **COMMON)


def test_min_class_samples_is_enforced_in_every_split(tmp_path):
    X, y = _xy(n=24, classes=2)  # 12 per class: test 3, val 2, train 7 of each
    path = _write_npz(tmp_path / "d.npz", X=X, y=y)
    assert len(data.prepare_dataset(source="npz", npz_path=path, **COMMON, min_class_samples=2).y_val) == 4
    expected = (
        f"{path}: class '0' has 2 sample(s) in the val split (train 7, val 2, test 3), fewer than "
        "data.min_class_samples=3; add more samples of class '0', use a larger data.val_fraction or "
        "lower data.min_class_samples"
    )
    with pytest.raises(UserError, match=f"^{re.escape(expected)}$"):
        data.prepare_dataset(source="npz", npz_path=path, **COMMON, min_class_samples=3)


def test_nan_label_names_the_file_and_the_sample(tmp_path):
    X, y = _xy(n=12, classes=2)
    y = y.astype(float)
    y[7] = np.nan
    path = _write_npz(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(UserError, match=re.escape(f"{path} [X, y]: label of sample 7 is nan")):
        data.prepare_dataset(source="npz", npz_path=path, **COMMON)


def test_ts_label_outside_class_label_names_the_line(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TINY_TS.replace("7,8:9,10:b", "7,8:9,10:c"))
    expected = f"{path}:11: label 'c' is not declared in @classLabel ['a', 'b']"
    with pytest.raises(UserError, match=re.escape(expected)):
        data.load_ts(path)


# --------------------------------------------------------------------------- sample ids and groups


def test_ids_say_where_each_sample_came_from(tmp_path):
    train = tmp_path / "Tiny_TRAIN.ts"
    train.write_text(TINY_TS)
    assert data.load_ts(train).train.ids.tolist() == [f"{train}:10", f"{train}:11", f"{train}:12"]
    X, y = _xy(n=4)
    path = _write_npz(tmp_path / "d.npz", X=X, y=y)
    assert data.load_npz(path).train.ids.tolist() == [f"{path}[{i}]" for i in range(4)]
    split_path = _write_npz(tmp_path / "s.npz", X_train=X, y_train=y, X_test=X[:2], y_test=y[:2])
    assert data.load_npz(split_path).test.ids.tolist() == [f"{split_path}:test[0]", f"{split_path}:test[1]"]


def test_bundled_ids_name_the_set_and_its_split(japanese_vowels):
    assert japanese_vowels.train.ids[:2].tolist() == ["JapaneseVowels:train[0]", "JapaneseVowels:train[1]"]
    assert japanese_vowels.test.ids[-1] == "JapaneseVowels:test[369]"


def test_prepared_ids_follow_their_samples_through_split_save_and_load(tmp_path):
    X, y = _xy(n=40, classes=2)
    X[:, 0, 0] = np.arange(40)  # trace each row back to its index after splitting and scaling
    path = _write_npz(tmp_path / "d.npz", X=X, y=y)
    ds = data.prepare_dataset(source="npz", npz_path=path, **COMMON)
    data.save_dataset(ds, tmp_path / "out.npz", tmp_path / "out.json")
    back = data.load_dataset(tmp_path / "out.npz")
    for name in ("train", "val", "test"):
        X_split, _ = back.split(name)
        rows = np.rint(X_split[:, 0, 0] * ds.std[0] + ds.mean[0]).astype(int)
        assert back.sample_ids(name).tolist() == [f"{path}[{row}]" for row in rows]
    assert back.metadata()["groups"] == {"train": [], "val": [], "test": []}


def test_named_groups_go_exactly_where_they_are_asked(tmp_path, wav_root):
    audio = {**AUDIO, "root": str(wav_root), "group_regex": r"(spk\d+)_"}
    ds = data.prepare_dataset(
        source="audio", audio=audio, **{**COMMON, "length": 16}, test_groups=["spk2"], val_groups=["spk4"]
    )
    assert ds.metadata()["groups"] == {"train": ["spk1", "spk3"], "val": ["spk4"], "test": ["spk2"]}
    assert ds.ids_test.tolist() == ["no/spk2_0.wav", "no/spk2_1.wav", "yes/spk2_0.wav", "yes/spk2_1.wav"]
    data.save_dataset(ds, tmp_path / "out.npz", tmp_path / "out.json")
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["groups"]["val"] == ["spk4"]
    assert data.load_dataset(tmp_path / "out.npz").ids_val.tolist() == ds.ids_val.tolist()


def test_fold_k_leaves_the_kth_group_out(wav_root):
    audio = {**AUDIO, "root": str(wav_root), "group_regex": r"(spk\d+)_"}
    for k, speaker in enumerate(SPEAKERS):
        groups = data.prepare_dataset(source="audio", audio=audio, **{**COMMON, "length": 16}, fold=k).groups
        assert groups["test"] == [speaker]
        assert len(groups["val"]) == 1 and len(groups["train"]) == 2
        assert sorted(groups["train"] + groups["val"] + groups["test"]) == list(SPEAKERS)
    by_seed = {
        seed: data.prepare_dataset(
            source="audio", audio=audio, **{**COMMON, "length": 16, "seed": seed}, fold=0
        ).groups["val"][0]
        for seed in range(6)
    }
    assert len(set(by_seed.values())) > 1  # val groups are drawn with the seed


@pytest.mark.parametrize(
    "choice, expected",
    [
        (
            {"test_groups": ["spk9"]},
            "config key 'data.test_groups': unknown group(s) ['spk9']; known groups: "
            "['spk1', 'spk2', 'spk3', 'spk4']",
        ),
        (
            {"fold": 4},
            "config key 'data.fold': 4 is not a group index; the data have 4 groups, "
            "so fold must lie in 0..3",
        ),
        (
            {"fold": 0, "test_groups": ["spk1"]},
            "config keys 'data.fold' and 'data.test_groups' both choose the test groups; set only one",
        ),
        (
            {"test_groups": ["spk1"], "val_groups": ["spk1"]},
            "config key 'data.val_groups': groups ['spk1'] are also test groups; a group sits in one split",
        ),
    ],
)
def test_bad_group_choices_are_named(wav_root, choice, expected):
    audio = {**AUDIO, "root": str(wav_root), "group_regex": r"(spk\d+)_"}
    with pytest.raises(UserError, match=f"^{re.escape(expected)}$"):
        data.prepare_dataset(source="audio", audio=audio, **{**COMMON, "length": 16}, **choice)


def test_group_choice_without_groups_says_how_to_get_them(tmp_path):
    X, y = _xy(n=12)
    path = _write_npz(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(UserError, match=re.escape("config key 'data.test_groups': the data have no groups")):
        data.prepare_dataset(source="npz", npz_path=path, **COMMON, test_groups=["a"])


def test_group_names_come_from_file_names_alone(wav_root):
    settings = {"source": "audio", "audio": {**AUDIO, "root": str(wav_root), "group_regex": r"(spk\d+)_"}}
    assert data.group_names(settings) == list(SPEAKERS)
    assert data.group_names({**settings, "audio": {**settings["audio"], "group_regex": None}}) == []
    assert data.group_names({"source": "npz", "npz_path": "x.npz"}) == []
    # The workflow calls this while it plans the jobs: it must not pay for torch or librosa.
    code = (
        "import sys; from prunequant.data.audio import group_names; "
        f"print(group_names({settings!r})); "
        "print(sorted({'torch', 'librosa', 'soundfile'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [repr(list(SPEAKERS)), "[]"]


# --------------------------------------------------------------------------- audio length


def _tone(n_samples: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n_samples) / SR)).astype(np.float32)


def test_pad_crop_pads_the_waveform_with_silence(tmp_path):
    frames = 30  # at hop 80, (30 - 1) * 80 = 2320 samples give exactly 30 centred frames
    clips = {
        "short": _tone(800),  # padded
        "silence": np.concatenate([_tone(800), np.zeros(1520, dtype=np.float32)]),  # real silence
        "long": _tone(4000),  # cropped
        "cut": _tone(2320),  # what cropping should give
    }
    for name, clip in clips.items():
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "a.wav", clip, SR, subtype="FLOAT")
    raw = data.load_audio_folder(tmp_path, **AUDIO, frames=frames)
    mfcc = dict(zip(raw.train.labels, raw.train.series, strict=True))
    assert {m.shape for m in mfcc.values()} == {(13, frames)}
    np.testing.assert_allclose(mfcc["short"], mfcc["silence"], atol=1e-4)
    np.testing.assert_allclose(mfcc["long"], mfcc["cut"], atol=1e-4)
    # Frames 12 on see only padding (window of 256 centred at 12 * 80 starts past sample 800):
    # they are the MFCCs of silence, not zero vectors.
    assert np.all(np.abs(mfcc["short"][:, 12:]).max(axis=0) > 1.0)
    without = data.load_audio_folder(tmp_path, **AUDIO)  # no frames: each clip keeps its own length
    assert [s.shape[1] for s in without.train.series] == [30, 51, 11, 30]


def test_pad_crop_audio_dataset_has_the_requested_frames(wav_root):
    audio = {**AUDIO, "root": str(wav_root)}
    ds = data.prepare_dataset(
        source="audio", audio=audio, **{**COMMON, "length": 20, "length_method": "pad_crop"}
    )
    assert ds.X_train.shape[1:] == (13, 20)
    resampled = data.prepare_dataset(source="audio", audio=audio, **{**COMMON, "length": 20})
    assert resampled.X_train.shape[1:] == (13, 20)
    assert not np.allclose(ds.X_train, resampled.X_train)
