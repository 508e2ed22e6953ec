"""SimPO: TRL's CPO loss with loss_type simpo on tensors (length normalization, margin), a tiny-model run."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from posttrain.errors import RecipeError
from posttrain.recipe.loader import load_recipe

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl.experimental.cpo import CPOTrainer

VOCAB = 8


def simpo_losses(chosen: torch.Tensor, rejected: torch.Tensor, *, beta: float = 2.0, gamma: float = 0.5) -> torch.Tensor:
    """TRL's CPO loss as the simpo stage configures it (loss_type simpo, no AlphaPO, no label smoothing)."""
    trainer = SimpleNamespace(
        loss_type="simpo", beta=beta, simpo_gamma=gamma, alpha=0.0, label_smoothing=0.0,
        accelerator=SimpleNamespace(device="cpu"),
    )
    losses, _, _ = CPOTrainer.cpo_loss(trainer, chosen, rejected)
    return losses


def answer_logps(token_logp: float, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of a 2-token prompt and a `length`-token answer whose every token has log p = token_logp."""
    rest = math.log((1 - math.exp(token_logp)) / (VOCAB - 1))
    logits = torch.full((1, length + 2, VOCAB), rest)
    labels = torch.full((1, length + 2), -100)
    for t in range(2, length + 2):
        labels[0, t] = 1
        logits[0, t - 1, 1] = token_logp  # the logits at t-1 predict the token at t
    return logits, labels


def sequence_logp(token_logp: float, length: int, *, average: bool) -> torch.Tensor:
    logits, labels = answer_logps(token_logp, length)
    return CPOTrainer.get_batch_logps(logits, labels, average_log_prob=average)


def test_the_preferred_answer_more_likely_gives_the_lower_loss() -> None:
    likelier, less = torch.tensor([-0.5]), torch.tensor([-1.5])
    assert simpo_losses(likelier, less) < simpo_losses(less, likelier)
    # -log σ(β·Δ − γ): a margin of γ/β per token is where the loss crosses log 2.
    assert simpo_losses(torch.tensor([-1.0]), torch.tensor([-1.25])).item() == pytest.approx(math.log(2), rel=1e-5)


def test_length_normalization_judges_answers_per_token() -> None:
    # A short answer at log p −1 per token vs a long one at −0.5 per token: summed, the short one wins
    # (−4 > −8); per token (what SimPO scores) the long one does, and the loss says so.
    assert sequence_logp(-1.0, 4, average=False).item() == pytest.approx(-4.0, abs=1e-4)
    short, long = sequence_logp(-1.0, 4, average=True), sequence_logp(-0.5, 16, average=True)
    assert (short.item(), long.item()) == pytest.approx((-1.0, -0.5), abs=1e-4)
    assert simpo_losses(long, short) < simpo_losses(short, long)
    # Equal per-token likelihood is a tie whatever the lengths: only the margin γ is left.
    tie = simpo_losses(sequence_logp(-1.0, 3, average=True), sequence_logp(-1.0, 20, average=True))
    assert tie.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(-0.5)).item(), rel=1e-4)


def test_a_reference_setting_is_refused_as_reference_free(tmp_path: Path) -> None:
    (tmp_path / "prefs.jsonl").write_text("")
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\nmodel: {base: x}\ndatasets: {p: {kind: preference, sources: [{path: prefs.jsonl}]}}\n"
        "stages:\n  - {name: s, type: simpo, data: p, ref_model: base}\n"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert len(info.value.problems) == 1
    assert "stages[0]: `ref_model`: SimPO is reference-free" in info.value.problems[0]


def test_held_out_preference_accuracy_and_margin_rise(measure) -> None:
    measured = measure("simpo", settings="beta: 2.0, gamma: 0.5,")
    before, after = measured.before, measured.after
    assert after["preference_margin"] > before["preference_margin"] + 0.05
    assert after["preference_accuracy"] >= before["preference_accuracy"]
