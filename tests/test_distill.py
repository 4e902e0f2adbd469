"""The distillation loss by hand, alpha = 0 as plain training to the bit, and a teacher left untouched."""

import math

import numpy as np
import pytest
import torch

from prunequant.checkpoint import save_model
from prunequant.distill import Distillation, distillation_objective, soft_target_loss, teacher_logits
from prunequant.engine import TrainConfig, train
from prunequant.model import BlockSpec, ModelSpec, build_model

STUDENT = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.5]])
TEACHER = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
LABELS = torch.tensor([0, 2])


def _by_hand(student, teacher, labels, temperature, alpha):
    """Σ p_t (log p_t − log p_s) at T, averaged over rows, times T², mixed with the cross-entropy."""
    soft, hard = 0.0, 0.0
    for s, t, y in zip(student.tolist(), teacher.tolist(), labels.tolist(), strict=True):

        def softmax(z, temperature):
            exps = [math.exp(v / temperature) for v in z]
            return [e / sum(exps) for e in exps]

        p_t, p_s = softmax(t, temperature), softmax(s, temperature)
        soft += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s, strict=True))
        hard += -math.log(softmax(s, 1.0)[y])
    n = len(labels)
    return alpha * temperature**2 * soft / n + (1 - alpha) * hard / n


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_the_loss_equals_a_hand_computation(temperature, alpha):
    loss = soft_target_loss(STUDENT, TEACHER, LABELS, temperature=temperature, alpha=alpha)
    assert loss.item() == pytest.approx(_by_hand(STUDENT, TEACHER, LABELS, temperature, alpha), rel=1e-6)


def test_the_soft_term_is_scaled_by_t_squared():
    # alpha = 1 is the soft term alone: T² · KL at T. At a large T, KL ≈ Σ (z_t − z_s)² spread / (2T²)
    # shrinks as 1/T², so the T² factor keeps the soft gradients' size: loss(T=8) ≈ loss(T=16).
    soft = {
        t: soft_target_loss(STUDENT, TEACHER, LABELS, temperature=t, alpha=1.0).item() for t in (8.0, 16.0)
    }
    unscaled = {t: value / t**2 for t, value in soft.items()}
    assert soft[8.0] == pytest.approx(soft[16.0], rel=0.05)
    assert unscaled[8.0] == pytest.approx(4 * unscaled[16.0], rel=0.05)
    # identical logits: the soft term vanishes whatever T
    assert soft_target_loss(TEACHER, TEACHER, LABELS, temperature=4.0, alpha=1.0).item() == pytest.approx(0.0)


@pytest.mark.parametrize(
    "settings,words",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.5}, "alpha"),
        ({"loss": "mse"}, "loss"),
    ],
)
def test_bad_settings_are_refused(settings, words):
    base = {"name": "kd", "loss": "soft_targets", "temperature": 4.0, "alpha": 0.5, "teacher": "baseline"}
    with pytest.raises(ValueError, match=words):
        Distillation.from_settings(base | settings)


SPEC = ModelSpec(in_channels=3, n_classes=2, blocks=(BlockSpec(5, 2, 8),))
CONFIG = TrainConfig(
    epochs=3, batch_size=8, lr=1e-2, weight_decay=0.0, lr_schedule="none", lr_step_epochs=1, seed=3
)


def _data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 32, generator=generator)
    x[:, 0] += 2 * y[:, None] - 1
    return x, y


def _train(tmp_path, name, objective):
    torch.manual_seed(0)
    model = build_model(SPEC)
    train(
        model,
        _data(48, 0),
        _data(16, 1),
        CONFIG,
        device=torch.device("cpu"),
        best_path=tmp_path / f"{name}.pt",
        resume_path=tmp_path / f"{name}-resume.pt",
        job_fingerprint=name,
        log=lambda line: None,
        objective=objective,
    )
    return model


def _teacher(tmp_path):
    torch.manual_seed(7)
    teacher = build_model(SPEC)
    teacher.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so train and eval mode differ
        teacher(_data(48, 5)[0] * 3)
    path = tmp_path / "teacher.pt"
    save_model(teacher, path)
    return path


def test_alpha_zero_is_the_plain_hard_label_training_bit_for_bit(tmp_path):
    path = _teacher(tmp_path)
    distillation = Distillation("kd", "soft_targets", temperature=4.0, alpha=0.0, teacher="baseline")
    logits = teacher_logits(path, _data(48, 0)[0], batch_size=16, device=torch.device("cpu"))
    plain = _train(tmp_path, "plain", None)
    distilled = _train(tmp_path, "distilled", distillation_objective(distillation, logits))
    for key, value in plain.state_dict().items():
        assert torch.equal(value, distilled.state_dict()[key]), key
    # and a teacher that counts changes the result
    counted = Distillation("kd", "soft_targets", temperature=4.0, alpha=0.9, teacher="baseline")
    other = _train(tmp_path, "counted", distillation_objective(counted, logits))
    assert not torch.equal(other.state_dict()["head.weight"], plain.state_dict()["head.weight"])


def test_the_teacher_runs_in_eval_mode_and_its_weights_do_not_change(tmp_path):
    path = _teacher(tmp_path)
    before = path.read_bytes()
    x = _data(48, 0)[0]
    logits = teacher_logits(path, x, batch_size=16, device=torch.device("cpu"))
    from prunequant.checkpoint import load_model

    teacher, _ = load_model(path)
    teacher.eval()
    with torch.no_grad():
        expected = teacher(x)
        teacher.train()
        in_train_mode = teacher(x)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(in_train_mode, expected)  # the check above could tell the modes apart
    assert not logits.requires_grad
    distillation = Distillation("kd", "soft_targets", temperature=2.0, alpha=0.7, teacher="baseline")
    _train(tmp_path, "student", distillation_objective(distillation, logits))
    assert path.read_bytes() == before
