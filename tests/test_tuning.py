"""Baseline tuning: grid names, a choice made on validation only, adoption of the chosen files."""

import json

import numpy as np
import pandas as pd
import pytest

from prunequant.errors import UserError
from prunequant.report.sections import tuning_section
from prunequant.report.study_figures import plot_tuning
from prunequant.tuning import adopt_candidate, choose_candidate, tuning_table
from prunequant.variants import candidate_name, candidate_training, parse_candidate, tuning_grid

TRAIN = {
    "epochs": 3,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "none",
    "lr_step_epochs": 1,
}


@pytest.mark.parametrize(
    "batch_size,lr,name",
    [
        (32, 1e-3, "bs32-lr0.001"),
        (16, 3e-4, "bs16-lr0.0003"),
        (8, 1e-5, "bs8-lr0.00001"),
        (64, 10.0, "bs64-lr10"),
    ],
)
def test_candidate_names_are_positional_and_parse_back(batch_size, lr, name):
    assert candidate_name(batch_size, lr) == name
    assert parse_candidate(name) == (batch_size, pytest.approx(lr))


def test_a_name_that_is_not_a_candidate_is_refused():
    with pytest.raises(ValueError, match="not a tuning candidate"):
        parse_candidate("bs32-lr1e-05")


def test_the_grid_is_off_without_values_and_keeps_trains_value_on_an_empty_axis():
    assert tuning_grid({"batch_sizes": [], "lrs": []}, TRAIN) == []
    assert tuning_grid({"batch_sizes": [16, 32], "lrs": []}, TRAIN) == ["bs16-lr0.001", "bs32-lr0.001"]
    assert tuning_grid({"batch_sizes": [16], "lrs": [1e-3, 3e-3]}, TRAIN) == ["bs16-lr0.001", "bs16-lr0.003"]


def test_a_candidate_trains_with_its_batch_size_and_rate_and_everything_else_from_train():
    assert candidate_training("bs16-lr0.003", TRAIN) == TRAIN | {"batch_size": 16, "lr": 0.003}


def _write_run(folder, *, val_correct, test_correct, val_loss):
    """A candidate run's predictions (val then test rows) and evaluation, as a training job writes them."""
    folder.mkdir(parents=True)
    rows = [
        {
            "split": split,
            "index": i,
            "sample_id": f"{split}{i}",
            "label": 0,
            "prediction": 0 if ok else 1,
            "correct": ok,
        }
        for split, flags in (("val", val_correct), ("test", test_correct))
        for i, ok in enumerate(flags)
    ]
    pd.DataFrame(rows).to_csv(folder / "predictions.csv", index=False)
    accuracy = 100.0 * np.mean(test_correct)
    (folder / "evaluation.json").write_text(json.dumps({"val_loss": val_loss, "accuracy": accuracy}))
    return folder / "predictions.csv", folder / "evaluation.json"


def _grid(tmp_path, spec):
    """spec: candidate → run → (val correct count of 10, test correct count of 10, val loss)."""
    predictions, evaluations = {}, {}
    for candidate, runs in spec.items():
        for run, (val_ok, test_ok, loss) in runs.items():
            pred, ev = _write_run(
                tmp_path / run / candidate,
                val_correct=[True] * val_ok + [False] * (10 - val_ok),
                test_correct=[True] * test_ok + [False] * (10 - test_ok),
                val_loss=loss,
            )
            predictions.setdefault(candidate, {})[run] = pred
            evaluations.setdefault(candidate, {})[run] = ev
    return predictions, evaluations


def test_the_choice_follows_validation_even_when_test_says_otherwise(tmp_path):
    # bs16 wins on validation (mean 83.3% vs 80%), bs32 would win on test (100% vs 50%).
    predictions, evaluations = _grid(
        tmp_path,
        {
            "bs16-lr0.001": {"seed0": (9, 5, 0.3), "seed1": (8, 5, 0.3), "seed2": (8, 5, 0.3)},
            "bs32-lr0.001": {"seed0": (8, 10, 0.2), "seed1": (8, 10, 0.2), "seed2": (8, 10, 0.2)},
        },
    )
    table = tuning_table(predictions, evaluations)
    assert choose_candidate(table) == "bs16-lr0.001"
    row = table.set_index("candidate").loc["bs16-lr0.001"]
    assert row["val_accuracy"] == pytest.approx(250 / 3)
    assert row["interval_method"] == "t over 3 runs"
    # t-interval over (90, 80, 80): mean ± t(0.975, df=2) · sd / √3 = 83.33 ± 4.3027 · 3.3333
    assert row["val_accuracy_low"] == pytest.approx(250 / 3 - 4.3027 * 10 / 3, abs=1e-3)
    assert row["val_accuracy_high"] == pytest.approx(250 / 3 + 4.3027 * 10 / 3, abs=1e-3)
    assert row["val_accuracy_by_run"] == "seed0=90.00 seed1=80.00 seed2=80.00"


def test_shuffled_test_labels_leave_the_choice_unchanged(tmp_path):
    spec = {
        "bs16-lr0.001": {"seed0": (7, 9, 0.5)},
        "bs32-lr0.001": {"seed0": (9, 2, 0.4)},
        "bs64-lr0.001": {"seed0": (6, 10, 0.6)},
    }
    predictions, evaluations = _grid(tmp_path, spec)
    before = choose_candidate(tuning_table(predictions, evaluations))
    rng = np.random.default_rng(0)
    for by_run in predictions.values():
        for path in by_run.values():
            frame = pd.read_csv(path)
            test = frame["split"] == "test"
            frame.loc[test, "correct"] = rng.permutation(frame.loc[test, "correct"].to_numpy())[::-1]
            frame.loc[test, "label"] = rng.integers(0, 5, test.sum())
            frame.to_csv(path, index=False)
    assert before == "bs32-lr0.001"
    assert choose_candidate(tuning_table(predictions, evaluations)) == before
    assert (
        tuning_table(predictions, evaluations)["interval_method"].iloc[0]
        == "bootstrap over 10 validation samples"
    )


def test_ties_go_to_the_lower_validation_loss_then_to_the_earlier_grid_point(tmp_path):
    predictions, evaluations = _grid(
        tmp_path,
        {
            "bs16-lr0.001": {"seed0": (8, 0, 0.5)},
            "bs32-lr0.001": {"seed0": (8, 0, 0.4)},
            "bs64-lr0.001": {"seed0": (8, 0, 0.4)},
        },
    )
    assert choose_candidate(tuning_table(predictions, evaluations)) == "bs32-lr0.001"


def test_a_candidate_without_validation_rows_is_a_clear_error(tmp_path):
    predictions, evaluations = _grid(tmp_path, {"bs16-lr0.001": {"seed0": (8, 8, 0.5)}})
    path = predictions["bs16-lr0.001"]["seed0"]
    frame = pd.read_csv(path)
    frame[frame["split"] == "test"].to_csv(path, index=False)
    with pytest.raises(UserError, match="bs16-lr0.001 has no validation predictions"):
        tuning_table(predictions, evaluations)


def test_adoption_copies_the_chosen_candidates_files_and_names_it(tmp_path):
    candidates = {}
    for name in ("bs16-lr0.001", "bs32-lr0.001"):
        folder = tmp_path / name
        folder.mkdir()
        files = {key: folder / f"{key}.bin" for key in ("model", "history", "metrics", "predictions")}
        for key, path in files.items():
            path.write_text(f"{name}:{key}")
        files["evaluation"] = folder / "evaluation.json"
        files["evaluation"].write_text(json.dumps({"accuracy": 90.0, "artifact": f"{folder}/model.bin"}))
        candidates[name] = files
    (tmp_path / "choice.json").write_text(json.dumps({"chosen": "bs32-lr0.001"}))
    out = tmp_path / "baseline"
    out.mkdir()
    baseline = {key: out / path.name for key, path in candidates["bs16-lr0.001"].items()}

    assert adopt_candidate(tmp_path / "choice.json", candidates, baseline) == "bs32-lr0.001"
    for key in ("model", "history", "metrics", "predictions"):
        assert baseline[key].read_text() == f"bs32-lr0.001:{key}"
    evaluation = json.loads(baseline["evaluation"].read_text())
    assert evaluation == {
        "accuracy": 90.0,
        "artifact": baseline["model"].as_posix(),
        "tuned_from": "bs32-lr0.001",
    }


def test_adoption_refuses_a_choice_outside_the_runs_grid(tmp_path):
    (tmp_path / "choice.json").write_text(json.dumps({"chosen": "bs8-lr0.1"}))
    with pytest.raises(UserError, match="bs8-lr0.1 is not in this run's grid"):
        adopt_candidate(tmp_path / "choice.json", {"bs16-lr0.001": {}}, {})


def test_the_report_section_and_figure_show_every_candidate_and_the_choice(tmp_path):
    predictions, evaluations = _grid(
        tmp_path,
        {
            "bs16-lr0.001": {"seed0": (9, 5, 0.3), "seed1": (8, 5, 0.3)},
            "bs16-lr0.003": {"seed0": (7, 5, 0.3), "seed1": (6, 5, 0.3)},
            "bs32-lr0.001": {"seed0": (8, 10, 0.2), "seed1": (8, 10, 0.2)},
        },
    )
    tables = {"fixed": tuning_table(predictions, evaluations)}
    text = tuning_section(tables, {"fixed": "bs16-lr0.001"})
    assert "2 batch size(s) × 2 learning rate(s)" in text
    assert "Chosen: `fixed`: **bs16-lr0.001**" in text
    assert "val acc % [95% CI]" in text
    at_90 = {"fixed": tuning_table(predictions, evaluations, confidence=0.9)}
    assert "val acc % [90% CI]" in tuning_section(at_90, {"fixed": "bs16-lr0.001"})
    lines = [line for line in text.splitlines() if line.startswith("| `fixed`")]
    assert len(lines) == 3
    assert [line.endswith("✔ |") for line in lines] == [True, False, False]
    assert "test" not in " ".join(lines)
    plot_tuning(tables, {"fixed": "bs16-lr0.001"}, tmp_path / "tuning.png")
    assert (tmp_path / "tuning.png").stat().st_size > 10_000
