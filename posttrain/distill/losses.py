"""Token-level divergences between a student and a teacher, as pure tensor functions.

Every function takes logits of shape (..., vocab) and returns the divergence
per position (shape (...)); `masked_mean` averages it over the positions that
are targets. Conventions (matching TRL's generalized JSD):

- forward KL  = KL(teacher ‖ student): mass-covering, the classic KD loss;
- reverse KL  = KL(student ‖ teacher): mode-seeking;
- generalized JSD with `beta`: with the mixture m = beta·teacher + (1-beta)·student,
  JSD_beta = beta·KL(teacher ‖ m) + (1-beta)·KL(student ‖ m).
  It is symmetric at beta = 0.5 and *vanishes* at both ends; only
  JSD_beta / beta → forward KL (beta → 0) and JSD_beta / (1-beta) → reverse KL
  (beta → 1). So `beta: 0` or `1` would train on nothing: `divergence` maps them
  to the KL they stand for, as TRL does.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
Divergence = Literal["forward_kl", "reverse_kl", "jsd"]


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # At least float32: log-softmax over a large vocab in bf16 loses the small probabilities KL cares about.
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return F.log_softmax(logits.to(dtype) / temperature, dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per position, from log-probabilities (0·log 0 counts as 0)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) per position."""
    return _kl(_log_probs(teacher_logits, temperature), _log_probs(student_logits, temperature))


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(student ‖ teacher) per position."""
    return _kl(_log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature))


def generalized_jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5, temperature: float = 1.0
) -> torch.Tensor:
    """beta·KL(teacher ‖ m) + (1-beta)·KL(student ‖ m), m = beta·teacher + (1-beta)·student; per position."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    log_s = _log_probs(student_logits, temperature)
    log_t = _log_probs(teacher_logits, temperature)
    if beta == 0.0 or beta == 1.0:  # the mixture equals one side: both terms are 0 (log(0) would give nan)
        return torch.zeros(log_s.shape[:-1], dtype=log_s.dtype, device=log_s.device)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log1p(-beta)]), dim=0)
    return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)


def divergence(
    kind: Divergence,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The recipe's `loss:` per position. `jsd` at beta 0 / 1 means forward / reverse KL (see module doc)."""
    if kind == "forward_kl" or (kind == "jsd" and beta == 0.0):
        return forward_kl(student_logits, teacher_logits, temperature)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1.0):
        return reverse_kl(student_logits, teacher_logits, temperature)
    if kind == "jsd":
        return generalized_jsd(student_logits, teacher_logits, beta, temperature)
    raise ValueError(f"unknown divergence {kind!r}")


def masked_mean(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over positions whose label is not IGNORE_INDEX (0 when there are none)."""
    mask = labels != IGNORE_INDEX
    return (values * mask).sum() / mask.sum().clamp_min(1)


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    kind: Divergence = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    ce_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss on aligned (already shifted) logits and labels: T²·divergence + ce_weight·CE.

    Logits are cut to the vocabulary both share (padded vocabularies differ
    only in rows no token uses). The T² factor keeps the divergence's gradients
    at the same scale as the CE's whatever the temperature (Hinton et al., 2015).
    Returns the loss and its parts, for logging.
    """
    shared = min(student_logits.size(-1), teacher_logits.size(-1))
    student_logits, teacher_logits = student_logits[..., :shared], teacher_logits[..., :shared]
    kd = masked_mean(divergence(kind, student_logits, teacher_logits, beta=beta, temperature=temperature), labels)
    loss = kd * temperature**2
    parts = {"kd": kd.detach()}
    if ce_weight > 0:
        ce = F.cross_entropy(
            student_logits.float().reshape(-1, shared), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        ) / (labels != IGNORE_INDEX).sum().clamp_min(1)
        loss = loss + ce_weight * ce
        parts["ce"] = ce.detach()
    return loss, parts
