"""A training process killed with SIGKILL resumes and ends exactly where an uninterrupted run ends;
an unreadable resume file is moved aside and training starts over."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from conftest import write_prepared_dataset

from prunequant.engine import TrainConfig, train
from prunequant.model import BlockSpec, ModelSpec, build_model

TRAINING = {
    "epochs": 150,
    "batch_size": 16,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "cosine",
    "lr_step_epochs": 1,
}
JOB = """
import sys
from prunequant.stages.train import run_training
out = sys.argv[1]
run_training(
    dataset_path=sys.argv[2], blocks=[{{"kernel_size": 5, "stride": 2, "width": 16}}], training={training},
    seed=0, device="cpu", model_path=out + "/model.pt", history_path=out + "/history.csv",
    metrics_path=out + "/metrics.json", resume_path=out + "/resume/state.pt",
)
"""


def make_dataset(tmp_path):
    write_prepared_dataset(tmp_path, n_samples=120, n_channels=4, length=40)
    return tmp_path / "dataset.npz"


def start(tmp_path, out, dataset):
    script = tmp_path / "job.py"
    script.write_text(JOB.format(training=repr(TRAINING)))
    (tmp_path / out).mkdir()
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / out), str(dataset)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path):
    dataset = make_dataset(tmp_path)
    killed = start(tmp_path, "killed", dataset)
    state = tmp_path / "killed" / "resume" / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let a few more epochs pass
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (tmp_path / "killed" / "model.pt").exists()

    resumed = subprocess.run(
        [sys.executable, str(tmp_path / "job.py"), str(tmp_path / "killed"), str(dataset)]
    )
    assert resumed.returncode == 0
    assert start(tmp_path, "uninterrupted", dataset).wait() == 0
    uninterrupted = tmp_path / "uninterrupted"

    metrics = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert 0 < metrics["resumed_from_epoch"] < TRAINING["epochs"]
    assert not state.exists()
    history_a = np.genfromtxt(tmp_path / "killed" / "history.csv", delimiter=",", names=True)
    history_b = np.genfromtxt(uninterrupted / "history.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(history_a["train_loss"], history_b["train_loss"])
    np.testing.assert_array_equal(history_a["val_accuracy"], history_b["val_accuracy"])
    a = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(uninterrupted / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_unreadable_resume_state_is_moved_aside_and_training_starts_over(tmp_path):
    resume = tmp_path / "resume" / "state.pt"
    resume.parent.mkdir()
    torch.save({"fingerprint": "job", "model": torch.zeros(1000)}, resume)
    resume.write_bytes(resume.read_bytes()[:200])  # cut short, as by a full disk
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 2, 16, generator=generator)
    y = torch.arange(24) % 2
    config = TrainConfig(
        epochs=2, batch_size=8, lr=1e-3, weight_decay=0.0, lr_schedule="none", lr_step_epochs=1, seed=0
    )
    torch.manual_seed(0)
    model = build_model(ModelSpec(in_channels=2, n_classes=2, blocks=(BlockSpec(3, 1, 4),)))
    messages = []
    result = train(
        model,
        (x, y),
        (x[:8], y[:8]),
        config,
        device=torch.device("cpu"),
        best_path=tmp_path / "model.pt",
        resume_path=resume,
        job_fingerprint="job",
        log=messages.append,
    )
    unreadable = tmp_path / "resume" / "state.pt.unreadable"
    assert unreadable.read_bytes()[:4] == b"PK\x03\x04" and len(unreadable.read_bytes()) == 200
    warning = next(m for m in messages if "cannot be read" in m)
    assert str(resume) in warning and str(unreadable) in warning
    assert result.resumed_from_epoch == 0 and len(result.history) == 2
    assert (tmp_path / "model.pt").is_file() and not resume.exists()
