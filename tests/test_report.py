import json
import struct

import pandas as pd
import pytest

from prunequant.report import (
    SUMMARY_COLUMNS,
    build_summary,
    plot_accuracy_vs_rate,
    plot_accuracy_vs_size,
    plot_training_curves,
    write_report,
    write_summary_csv,
)

# (model, prune_rate, precision, runtime, accuracy, size_bytes, latency_batch64_ms, parameters, macs)
# Hand-made so each comparison has one right answer: torch is twice as slow as onnxruntime, so a
# speedup measured against the wrong runtime is off by a factor of two; rate0.5/int8 is the smallest
# int8 file but 5 pp below the baseline, so the 1 pp headline must skip it.
ROWS = [
    ("baseline", 0.0, "fp32", "torch", 95.00, 40000, 2.0, 10000, 200000),
    ("baseline", 0.0, "fp32", "onnxruntime", 95.00, 36000, 1.0, 10000, 200000),
    ("baseline", 0.0, "int8", "onnxruntime", 94.60, 12000, 0.5, 10000, 200000),
    ("rate0.25", 0.25, "fp32", "torch", 94.50, 30000, 1.6, 7500, 150000),
    ("rate0.25", 0.25, "fp32", "onnxruntime", 94.50, 27000, 0.8, 7500, 150000),
    ("rate0.25", 0.25, "int8", "onnxruntime", 94.20, 9000, 0.4, 7500, 150000),
    ("rate0.5", 0.5, "fp32", "torch", 91.00, 20000, 1.2, 5000, 100000),
    ("rate0.5", 0.5, "fp32", "onnxruntime", 91.00, 18000, 0.6, 5000, 100000),
    ("rate0.5", 0.5, "int8", "onnxruntime", 90.00, 6000, 0.25, 5000, 100000),
]

META = {
    "source": {"kind": "ucr", "name": "FordA"},
    "classes": ["-1", "1"],
    "n_channels": 1,
    "length": 500,
    "n_train": 2880,
    "n_val": 720,
    "n_test": 1320,
    "seed": 7,
}


def _record(model, rate, precision, runtime, accuracy, size, lat64, parameters, macs):
    return {
        "model": model,
        "prune_rate": rate,
        "precision": precision,
        "runtime": runtime,
        "accuracy": accuracy,
        "loss": 0.1234,
        "n_test": 1320,
        "parameters": parameters,
        "macs": macs,
        "size_bytes": size,
        "weight_bytes": size // 2,
        "latency_batch1_ms": lat64 / 20,
        "latency_batch64_ms": lat64,
        "latency_threads": 1,
    }


def _write_metrics(directory, rows=ROWS, edit=None):
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in rows:
        record = _record(*row)
        if edit:
            edit(record)
        path = directory / f"{record['model']}_{record['precision']}_{record['runtime']}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


@pytest.fixture
def metric_paths(tmp_path):
    # Reversed, so the sort order under test is not the order the files came in.
    return _write_metrics(tmp_path / "metrics")[::-1]


@pytest.fixture
def summary(metric_paths):
    return build_summary(metric_paths)


def _by_variant(summary, variant):
    return summary.set_index("variant").loc[variant]


def test_summary_has_one_row_per_variant_with_all_columns(summary):
    assert len(summary) == 9
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert list(summary["variant"]) == [
        "baseline/fp32/torch",
        "baseline/fp32/onnxruntime",
        "baseline/int8/onnxruntime",
        "rate0.25/fp32/torch",
        "rate0.25/fp32/onnxruntime",
        "rate0.25/int8/onnxruntime",
        "rate0.5/fp32/torch",
        "rate0.5/fp32/onnxruntime",
        "rate0.5/int8/onnxruntime",
    ]


def test_derived_columns_compare_with_the_right_baseline_row(summary):
    row = _by_variant(summary, "rate0.25/int8/onnxruntime")
    assert row["accuracy_delta_pp"] == pytest.approx(94.20 - 94.60)  # baseline int8/onnxruntime
    assert row["accuracy_delta_pp_vs_fp32_torch"] == pytest.approx(94.20 - 95.00)
    assert row["size_ratio"] == pytest.approx(9000 / 40000)
    # Against baseline fp32/onnxruntime (1.0 ms); against torch (2.0 ms) it would read 5.0.
    assert row["speedup_batch64"] == pytest.approx(1.0 / 0.4)

    torch_row = _by_variant(summary, "rate0.5/fp32/torch")
    assert torch_row["speedup_batch64"] == pytest.approx(2.0 / 1.2)
    assert torch_row["accuracy_delta_pp"] == pytest.approx(91.00 - 95.00)

    reference = _by_variant(summary, "baseline/fp32/torch")
    assert reference["size_ratio"] == 1.0
    assert reference["speedup_batch64"] == 1.0
    assert reference["accuracy_delta_pp"] == 0.0


def test_summary_csv_round_trips(summary, tmp_path):
    path = tmp_path / "out" / "summary.csv"
    write_summary_csv(summary, path)
    back = pd.read_csv(path)
    assert list(back.columns) == list(SUMMARY_COLUMNS)
    assert back["speedup_batch64"].tolist() == pytest.approx(summary["speedup_batch64"].tolist())


def test_missing_baseline_row_is_an_error(tmp_path):
    rows = [row for row in ROWS if row[:4] != ("baseline", 0.0, "fp32", "onnxruntime")]
    with pytest.raises(ValueError, match="baseline.*fp32/onnxruntime"):
        build_summary(_write_metrics(tmp_path, rows))


def test_no_baseline_at_all_is_an_error(tmp_path):
    rows = [row for row in ROWS if row[0] != "baseline"]
    with pytest.raises(ValueError, match="fp32/torch"):
        build_summary(_write_metrics(tmp_path, rows))


def test_missing_key_names_file_and_key(tmp_path):
    paths = _write_metrics(tmp_path, ROWS[:1], edit=lambda record: record.pop("latency_batch64_ms"))
    paths += _write_metrics(tmp_path / "rest", ROWS[1:])
    with pytest.raises(ValueError, match="latency_batch64_ms") as error:
        build_summary(paths)
    assert paths[0].name in str(error.value)


def test_non_numeric_value_is_an_error(tmp_path):
    paths = _write_metrics(tmp_path, edit=lambda record: record.update(accuracy="97%"))
    with pytest.raises(ValueError, match="'accuracy'"):
        build_summary(paths)


def test_duplicate_variant_is_an_error(tmp_path):
    paths = _write_metrics(tmp_path / "a") + _write_metrics(tmp_path / "b", ROWS[:1])
    with pytest.raises(ValueError, match="baseline/fp32/torch appears in both"):
        build_summary(paths)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(
    ("plot", "size"), [(plot_accuracy_vs_rate, (800, 500)), (plot_accuracy_vs_size, (800, 500))]
)
def test_summary_plots_are_pngs_of_the_expected_size(summary, tmp_path, plot, size):
    path = tmp_path / "figures" / "plot.png"
    plot(summary, path)
    width, height = _png_size(path)
    assert abs(width - size[0]) <= 2 and abs(height - size[1]) <= 2


def _write_history(path, epochs, start_loss):
    rows = [
        {
            "epoch": e,
            "train_loss": start_loss / e,
            "train_accuracy": 60 + 3 * e,
            "val_loss": start_loss / e + 0.05,
            "val_accuracy": 58 + 3 * e,
            "learning_rate": 1e-3,
            "train_time": 0.5,
            "val_time": 0.1,
        }
        for e in range(1, epochs + 1)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_training_curves_png(tmp_path):
    histories = {
        "baseline": _write_history(tmp_path / "baseline.csv", 6, 1.0),
        "rate0.25": _write_history(tmp_path / "rate0.25.csv", 3, 0.6),
    }
    path = tmp_path / "figures" / "training_curves.png"
    plot_training_curves(histories, path)
    width, height = _png_size(path)
    assert abs(width - 1300) <= 2 and abs(height - 500) <= 2


def test_training_curves_missing_column_is_an_error(tmp_path):
    path = _write_history(tmp_path / "bad.csv", 3, 1.0)
    pd.read_csv(path).drop(columns="val_accuracy").to_csv(path, index=False)
    with pytest.raises(ValueError, match="bad.csv.*val_accuracy"):
        plot_training_curves({"baseline": path}, tmp_path / "curves.png")


FIGURES = {
    "accuracy_vs_rate": "figures/accuracy_vs_rate.png",
    "accuracy_vs_size": "figures/accuracy_vs_size.png",
    "training_curves": "figures/training_curves.png",
}


def test_report_contains_tables_figures_and_computed_headline(summary, tmp_path):
    out = tmp_path / "report" / "report.md"
    write_report(summary, figures=FIGURES, dataset_meta=META, out_path=out)
    text = out.read_text()

    assert text.startswith("# ")
    assert "| variant | prune rate | accuracy (%) |" in text
    assert "## Cost and benefit vs baseline" in text
    for variant in summary["variant"]:
        assert text.count(f"| {variant} |") == 2  # once per table
    for link in FIGURES.values():
        assert f"]({link})" in text
    # Formatting: accuracy with 2 decimals, bytes as integers, latency with 3 decimals.
    assert (
        "| rate0.25/int8/onnxruntime | 0.25 | 94.20 | 0.1234 | 7500 | 150000 | 9000 | 4500 "
        "| 0.020 | 0.400 | 1 |"
    ) in text
    assert "| rate0.25/int8/onnxruntime | -0.40 | -0.80 | 0.225x | 2.50x | 75.0% | 75.0% |" in text

    headline = text.split("## Headline", 1)[1].split("##", 1)[0]
    assert "95.00%" in headline
    # rate0.5/int8 is smaller but 5 pp down; rate0.25/int8 is the smallest within 1 pp.
    assert "**rate0.25/int8/onnxruntime**" in headline
    assert "rate0.5" not in headline
    assert "0.225x" in headline and "2.50x" in headline and "-0.80 pp" in headline
    assert "0.400 vs 1.000 ms" in headline

    for fact in (
        "FordA",
        "classes (2)",
        "1 channel(s) x 500 time steps",
        "train 2880",
        "validation 720",
        "test 1320",
        "seed: 7",
        "rate(s) (0.25, 0.5)",
    ):
        assert fact in text
    assert "median" in text and "1 thread" in text and "never used for selection" in text


def test_report_headline_when_no_int8_variant_is_within_budget(summary, tmp_path):
    out = tmp_path / "report.md"
    write_report(summary, figures={}, dataset_meta={}, out_path=out, accuracy_budget_pp=0.1)
    headline = out.read_text().split("## Headline", 1)[1].split("##", 1)[0]
    assert "No int8 variant stays within 0.10 pp" in headline
    assert "**baseline/int8/onnxruntime**" in headline  # the most accurate int8 variant
    assert "-0.40 pp" in headline


def test_report_reads_split_sizes_as_the_data_stage_writes_them(summary, tmp_path):
    meta = {"classes": ["a", "b"], "split_sizes": {"train": 216, "val": 54, "test": 400}}
    out = tmp_path / "report.md"
    write_report(summary, figures={}, dataset_meta=meta, out_path=out)
    text = out.read_text()
    assert "- split sizes: train 216, validation 54, test 400" in text
    assert "test split (400 examples)" in text
    assert "One test example is 0.25 pp of accuracy" in text
