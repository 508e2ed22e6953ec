"""ORPO: TRL's odds-ratio loss on tensors, the reference-free check, and a tiny-model run."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from posttrain.errors import RecipeError
from posttrain.recipe.loader import load_recipe

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl.experimental.orpo import ORPOTrainer


def odds_ratio_term(chosen: list[float], rejected: list[float], beta: float) -> torch.Tensor:
    """What ORPO adds to the SFT loss, per pair: −(TRL's odds_ratio_loss), which is λ·log σ(log odds ratio)."""
    trainer = SimpleNamespace(beta=beta, accelerator=SimpleNamespace(device="cpu"))
    losses, *_ = ORPOTrainer.odds_ratio_loss(trainer, torch.tensor(chosen), torch.tensor(rejected))
    return -losses


def test_the_preferred_answer_more_likely_gives_the_lower_loss() -> None:
    # Per-token log-probabilities (ORPO averages over tokens): chosen likelier in the first pair only.
    right, wrong = odds_ratio_term([-0.5, -0.9], [-2.0, -0.3], beta=0.1)
    assert right < wrong
    assert odds_ratio_term([-0.5], [-0.5], beta=0.1).item() == pytest.approx(0.1 * -F.logsigmoid(torch.tensor(0.0)))


def test_the_term_is_lambda_times_the_log_sigmoid_of_the_log_odds_ratio() -> None:
    chosen, rejected = torch.tensor(-0.4), torch.tensor(-1.5)
    odds = lambda logp: logp.exp() / (1 - logp.exp())  # noqa: E731
    expected = -F.logsigmoid(torch.log(odds(chosen) / odds(rejected)))
    for lam in (0.1, 1.0):
        term = odds_ratio_term([chosen.item()], [rejected.item()], beta=lam)
        assert term.item() == pytest.approx(lam * expected.item(), rel=1e-5)


def test_a_reference_setting_is_refused_as_reference_free(tmp_path: Path) -> None:
    (tmp_path / "prefs.jsonl").write_text("")
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\nmodel: {base: x}\ndatasets: {p: {kind: preference, sources: [{path: prefs.jsonl}]}}\n"
        "stages:\n  - {name: o, type: orpo, data: p, reference: sft}\n"
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert [p.split(" ", 1)[0] for p in info.value.problems] == [f"{path}:5:5"]
    assert "stages[0]: `reference`: ORPO is reference-free" in info.value.problems[0]


def test_held_out_preference_accuracy_and_margin_rise(measure) -> None:
    measured = measure("orpo")
    before, after = measured.before, measured.after
    assert after["preference_margin"] > before["preference_margin"] + 0.02
    assert after["preference_accuracy"] >= before["preference_accuracy"]
    assert after["chosen_logp_per_token"] > before["chosen_logp_per_token"]  # ORPO's SFT term
    assert (measured.report.run_dir / "orpo" / "adapter" / "adapter_model.safetensors").exists()
