import csv

import pytest
import torch

from prunequant.checkpoint import load_model
from prunequant.engine import (
    EpochRecord,
    TrainConfig,
    format_epoch_line,
    pick_device,
    train,
    write_history,
)
from prunequant.model import BlockSpec, ModelSpec, build_model

SPEC = ModelSpec(in_channels=3, n_classes=2, blocks=(BlockSpec(5, 2, 8),))
CONFIG = TrainConfig(
    epochs=4, batch_size=8, lr=1e-2, weight_decay=0.0, lr_schedule="step", lr_step_epochs=2, seed=3
)


def separable_data(n=64, seed=0):
    """Two classes told apart by the sign of a low-frequency component."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    t = torch.linspace(0, 1, 32)
    x = torch.randn(n, 3, 32, generator=generator) * 0.1
    x[:, 0] += (2 * y[:, None] - 1) * 3 * torch.sin(6.28 * t)
    return x, y


class Crash(Exception):
    pass


def run(tmp_path, log=lambda line: None, name="best.pt"):
    torch.manual_seed(0)
    model = build_model(SPEC)
    return train(
        model,
        separable_data(),
        separable_data(32, seed=1),
        CONFIG,
        device=torch.device("cpu"),
        best_path=tmp_path / name,
        resume_path=tmp_path / "resume" / "state.pt",
        job_fingerprint="job",
        log=log,
    )


def test_training_learns_and_logs_the_epoch_line(tmp_path):
    lines = []
    result = run(tmp_path, log=lines.append)
    assert result.best_accuracy > 90
    assert lines[0].startswith("Epoch: 1 |train loss: ")
    assert "|learning rate: 1.0e-02 |" in lines[0]
    assert any("|learning rate: 5.0e-03 |" in line for line in lines)  # step halving after 2 epochs
    assert "Saving..." in lines
    assert lines[-1] == f"Best accuracy: {result.best_accuracy:.2f}"
    assert not (tmp_path / "resume" / "state.pt").exists()
    model, metadata = load_model(tmp_path / "best.pt")
    assert metadata["best_epoch"] == result.best_epoch


def test_a_crashed_run_resumes_to_the_same_result(tmp_path):
    uninterrupted = run(tmp_path / "a")

    def crash_at_epoch_3(line):
        if line.startswith("Epoch: 3 "):
            raise Crash

    with pytest.raises(Crash):
        run(tmp_path / "b", log=crash_at_epoch_3)
    assert (tmp_path / "b" / "resume" / "state.pt").exists()
    lines = []
    resumed = run(tmp_path / "b", log=lines.append)
    assert resumed.resumed_from_epoch == 2
    assert lines[0].startswith("Resuming from epoch 2")
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in uninterrupted.history]
    assert resumed.best_accuracy == uninterrupted.best_accuracy
    a, _ = load_model(tmp_path / "a" / "best.pt")
    b, _ = load_model(tmp_path / "b" / "best.pt")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_resume_state_of_another_job_is_ignored(tmp_path):
    def crash_at_epoch_2(line):
        if line.startswith("Epoch: 2 "):
            raise Crash

    with pytest.raises(Crash):
        run(tmp_path, log=crash_at_epoch_2)
    torch.manual_seed(0)
    lines = []
    result = train(
        build_model(SPEC),
        separable_data(),
        separable_data(32, seed=1),
        CONFIG,
        device=torch.device("cpu"),
        best_path=tmp_path / "best.pt",
        resume_path=tmp_path / "resume" / "state.pt",
        job_fingerprint="another job",
        log=lines.append,
    )
    assert result.resumed_from_epoch == 0
    assert lines[0].startswith("Ignoring resume state")


def test_same_seed_same_result(tmp_path):
    first = run(tmp_path / "a")
    second = run(tmp_path / "b")
    assert [r.val_loss for r in first.history] == [r.val_loss for r in second.history]


def test_epoch_line_has_the_documented_format():
    record = EpochRecord(17, 0.21123, 94.7368, 0.52171, 83.125, 1e-3, 3.5912, 0.4149)
    assert format_epoch_line(record) == (
        "Epoch: 17 |train loss: 0.2112 |train accuracy: 94.74 |validation loss: 0.5217 "
        "|validation accuracy: 83.12 |learning rate: 1.0e-03 |train time: 3.59 |test time: 0.41"
    )


def test_history_csv_has_one_row_per_epoch(tmp_path):
    result = run(tmp_path)
    write_history(result.history, tmp_path / "history.csv")
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) >= {"train_loss", "val_accuracy", "learning_rate", "train_time", "val_time"}


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(
            epochs=1, batch_size=1, lr=1e-3, weight_decay=0, lr_schedule="exp", lr_step_epochs=1, seed=0
        )
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            pick_device("cuda")
