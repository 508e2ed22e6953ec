"""The divergences on small tensors whose values are known in closed form, and against TRL's own loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from trl.experimental.gkd import GKDTrainer

from posttrain.distill.losses import (
    IGNORE_INDEX,
    distill_loss,
    divergence,
    forward_kl,
    generalized_jsd,
    masked_mean,
    reverse_kl,
)


def logits_of(*probs: float) -> torch.Tensor:
    """Logits whose softmax is exactly `probs`."""
    return torch.tensor(probs, dtype=torch.float64).log()


def kl2(a: float, b: float) -> float:
    """KL((a, 1-a) ‖ (b, 1-b)) by hand."""
    return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))


TEACHER, STUDENT = logits_of(0.8, 0.2), logits_of(0.5, 0.5)


def test_forward_and_reverse_kl_match_the_two_token_closed_form() -> None:
    assert forward_kl(STUDENT, TEACHER).item() == pytest.approx(kl2(0.8, 0.5))  # 0.8 ln 1.6 + 0.2 ln 0.4
    assert forward_kl(STUDENT, TEACHER).item() == pytest.approx(0.192745, abs=1e-6)
    assert reverse_kl(STUDENT, TEACHER).item() == pytest.approx(kl2(0.5, 0.8))
    assert reverse_kl(STUDENT, TEACHER).item() == pytest.approx(0.223144, abs=1e-6)


def test_divergences_of_a_distribution_with_itself_are_zero() -> None:
    logits = torch.randn(3, 5, 11)
    for fn in (forward_kl, reverse_kl, generalized_jsd):
        assert torch.allclose(fn(logits, logits), torch.zeros(3, 5), atol=1e-6)
    assert (forward_kl(torch.randn(3, 5, 11), logits) > 0).all()


def test_jsd_at_half_is_the_symmetric_jensen_shannon_divergence() -> None:
    # m = (0.65, 0.35); JSD = ½ KL(t‖m) + ½ KL(s‖m), bounded by ln 2.
    expected = 0.5 * kl2(0.8, 0.65) + 0.5 * kl2(0.5, 0.65)
    assert generalized_jsd(STUDENT, TEACHER, beta=0.5).item() == pytest.approx(expected)
    a, b = torch.randn(4, 7), torch.randn(4, 7)
    assert torch.allclose(generalized_jsd(a, b, 0.5), generalized_jsd(b, a, 0.5), atol=1e-6)
    assert generalized_jsd(logits_of(0.999999, 0.000001), logits_of(0.000001, 0.999999)).item() < math.log(2)


def test_jsd_weights_the_teacher_by_beta() -> None:
    beta = 0.3
    m = beta * 0.8 + (1 - beta) * 0.5
    expected = beta * kl2(0.8, m) + (1 - beta) * kl2(0.5, m)
    assert generalized_jsd(STUDENT, TEACHER, beta=beta).item() == pytest.approx(expected)


def test_jsd_limits_are_forward_kl_at_zero_and_reverse_kl_at_one() -> None:
    # JSD_β vanishes at both ends; JSD_β/β → KL(t‖s) and JSD_β/(1-β) → KL(s‖t).
    s, t = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64)
    eps = 1e-5
    assert torch.allclose(generalized_jsd(s, t, eps) / eps, forward_kl(s, t), rtol=1e-3)
    assert torch.allclose(generalized_jsd(s, t, 1 - eps) / eps, reverse_kl(s, t), rtol=1e-3)
    # So the recipe's `jsd` with beta 0 / 1 means those KLs, as in TRL.
    assert torch.equal(divergence("jsd", s, t, beta=0.0), forward_kl(s, t))
    assert torch.equal(divergence("jsd", s, t, beta=1.0), reverse_kl(s, t))


def test_temperature_divides_both_logits() -> None:
    s, t = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    assert torch.allclose(forward_kl(s, t, temperature=2.0), forward_kl(s / 2, t / 2), atol=1e-6)
    assert torch.allclose(generalized_jsd(s, t, 0.4, temperature=3.0), generalized_jsd(s / 3, t / 3, 0.4), atol=1e-6)
    assert forward_kl(s, t, temperature=100.0).max() < 1e-3  # everything flattens toward uniform


def test_masked_positions_do_not_count() -> None:
    student = torch.stack([STUDENT, logits_of(0.01, 0.99), STUDENT]).unsqueeze(0)  # (1, 3, 2)
    teacher = torch.stack([TEACHER, logits_of(0.99, 0.01), TEACHER]).unsqueeze(0)
    labels = torch.tensor([[0, IGNORE_INDEX, 1]])
    assert masked_mean(forward_kl(student, teacher), labels).item() == pytest.approx(kl2(0.8, 0.5))
    assert masked_mean(torch.ones(1, 2), torch.full((1, 2), IGNORE_INDEX)).item() == 0.0  # nothing to learn: 0, not nan


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_agrees_with_trl_generalized_jsd_loss(beta: float) -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 13), torch.randn(2, 5, 13)
    labels = torch.randint(0, 13, (2, 5))
    labels[0, :2] = IGNORE_INDEX
    ours = masked_mean(divergence("jsd", s, t, beta=beta), labels)
    theirs = GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)


def test_distill_loss_scales_by_t_squared_and_adds_ce() -> None:
    torch.manual_seed(1)
    s, t = torch.randn(2, 4, 10), torch.randn(2, 4, 10)
    labels = torch.randint(0, 10, (2, 4))
    labels[1, 0] = IGNORE_INDEX
    loss, parts = distill_loss(s, t, labels, kind="reverse_kl", temperature=2.0, ce_weight=0.5)
    kd = masked_mean(reverse_kl(s, t, 2.0), labels)
    ce = F.cross_entropy(s.reshape(-1, 10), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    assert loss.item() == pytest.approx((4 * kd + 0.5 * ce).item(), rel=1e-5)
    assert parts["kd"].item() == pytest.approx(kd.item()) and parts["ce"].item() == pytest.approx(ce.item())


def test_padded_vocab_is_cut_to_the_shared_part() -> None:
    torch.manual_seed(2)
    s, t = torch.randn(1, 3, 10), torch.randn(1, 3, 13)  # the teacher's 3 extra rows are padding
    labels = torch.randint(0, 10, (1, 3))
    loss, _ = distill_loss(s, t, labels, kind="forward_kl")
    assert loss.item() == pytest.approx(masked_mean(forward_kl(s, t[..., :10]), labels).item())
