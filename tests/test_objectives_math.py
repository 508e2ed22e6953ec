"""The objective math on its own: which tokens count, how pairs and rewards are summarized, how changes read."""

from __future__ import annotations

import doctest
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.leaderboard.render import objective_rows, objectives_markdown
from posttrain.stagekit import HeldOutObjective
from posttrain.stagekit.specs import RewardSpec
from posttrain.training import objectives
from posttrain.training.objectives import (
    IGNORE_INDEX,
    PerRow,
    change_stderr,
    completion_logps,
    encode_completion,
    objective_of,
    preference_stats,
    reward_means,
    token_loss,
)
from posttrain.training.scoring import load_rewards

PROMPT = [{"role": "user", "content": "What is 12 + 7?"}]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_only_the_completion_tokens_are_labels(tokenizer: Any) -> None:
    item = encode_completion(tokenizer, PROMPT, "Answer: 19", max_length=128)
    prompt_text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert item.input_ids[:n] == list(prompt_ids)
    assert item.labels[:n] == [IGNORE_INDEX] * n
    answer = tokenizer.decode(item.labels[n:])
    assert answer.startswith("Answer: 19") and "<|im_end|>" in answer


def test_truncation_keeps_labels_aligned(tokenizer: Any) -> None:
    item = encode_completion(tokenizer, PROMPT, "Answer: 19 " * 20, max_length=16)
    assert len(item.input_ids) == len(item.labels) == 16


def test_completion_logps_match_a_hand_computed_sum_and_ignore_padding(tokenizer: Any, tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    short = encode_completion(tokenizer, PROMPT, "19", max_length=64)
    long = encode_completion(tokenizer, PROMPT, "12 + 7 = 19. Answer: 19", max_length=64)
    batched = completion_logps(model, [short, long], pad_id=tokenizer.pad_token_id, batch_size=2)
    alone = completion_logps(model, [short], pad_id=tokenizer.pad_token_id, batch_size=1)
    assert batched[0] == pytest.approx(alone[0], abs=1e-4)  # right padding beside a longer row changes nothing

    ids = torch.tensor([short.input_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    targets = torch.tensor(short.labels[1:])
    keep = targets != IGNORE_INDEX
    expected = logp[keep].gather(-1, targets[keep][:, None]).sum().item()
    assert alone[0][0] == pytest.approx(expected, abs=1e-4)
    assert alone[0][1] == int(keep.sum())


def test_token_loss_weights_by_tokens() -> None:
    assert token_loss([(-1.0, 1), (-9.0, 9)]).value == pytest.approx(1.0)
    assert math.isnan(token_loss([]).value)


def test_change_stderr_is_the_paired_error_of_the_weighted_mean() -> None:
    before = PerRow((4.0, 2.0, 6.0), (2.0, 1.0, 3.0))
    shift = PerRow((3.0, 1.0, 5.0), (2.0, 1.0, 3.0))  # every row 1 lower in its sum: a constant difference
    assert change_stderr(before, shift) == 0.0
    noisy = PerRow((5.0, 1.0, 6.0), (2.0, 1.0, 3.0))  # differences +1, -1, 0
    assert change_stderr(before, noisy) == pytest.approx(math.sqrt(3 * 1.0) / 6)
    skipped = PerRow((9.0, 2.0, 0.0), (1.0, 1.0, 0.0))  # weight 0: the row does not count
    assert change_stderr(skipped, PerRow((8.0, 2.0, 7.0), (1.0, 1.0, 0.0))) == pytest.approx(math.sqrt(2 * 0.5) / 2)
    with pytest.raises(ValueError, match="same rows"):
        change_stderr(before, PerRow.mean_of([1.0, 2.0, 3.0]))


def test_a_consistent_change_is_significant_and_a_mixed_one_is_noise() -> None:
    steady = objective_of(
        {"loss": PerRow.mean_of([2.0, 2.1, 1.9, 2.0])}, {"loss": PerRow.mean_of([1.5, 1.6, 1.5, 1.4])},
        rows=4, lower_is_better=("loss",),
    )
    assert steady.improved("loss") and steady.significant("loss")
    mixed = objective_of(
        {"reward": PerRow.mean_of([0, 1, 0, 1, 1, 0])}, {"reward": PerRow.mean_of([1, 0, 1, 0, 1, 1])}, rows=6
    )
    assert mixed.improved("reward") and mixed.significant("reward") is False


def test_the_reference_has_zero_implicit_reward_and_a_better_policy_a_positive_one() -> None:
    ref_c, ref_r = [-5.0, -4.0, -6.0], [-5.0, -3.0, -6.0]
    same = {k: v.value for k, v in preference_stats(ref_c, ref_r, ref_c, ref_r, beta=0.1).items()}
    assert same["reward_margin"] == 0 and same["reward_accuracy"] == 0
    assert same["logp_margin"] == pytest.approx(-1 / 3) and same["logp_accuracy"] == 0
    stats = preference_stats([-4.0, -3.0, -5.0], [-6.0, -3.5, -7.0], ref_c, ref_r, beta=0.1)
    better = {k: v.value for k, v in stats.items()}
    assert better["reward_accuracy"] == 1.0
    assert better["reward_margin"] == pytest.approx(0.1 * (2 + 0.5 + 2) / 3 + 0.1 * 1 / 3)
    assert better["logp_accuracy"] == 1.0


def test_reward_means_skip_rows_a_reward_does_not_apply_to() -> None:
    rewards = load_rewards(
        [RewardSpec(fn="rewards.math:exact_number"), RewardSpec(fn="rewards.format:answer_line", weight=0.5)],
        base_dir=None,
    )
    rows = [
        {"prompt": PROMPT, "answer": "19"},
        {"prompt": PROMPT, "answer": "19"},
        {"prompt": PROMPT, "answer": None},  # an instruction row: exact_number does not apply
    ]
    means = {k: v.value for k, v in reward_means(rewards, rows, ["Answer: 19", "Answer: 20", "Answer: 3"]).items()}
    assert means["reward/exact_number"] == pytest.approx(0.5)  # over the two rows with an answer
    assert means["reward/answer_line"] == pytest.approx(1.0)
    assert means["reward"] == pytest.approx((1.5 + 0.5 + 0.5) / 3)


def test_direction_of_a_change_follows_the_metric() -> None:
    objective = HeldOutObjective(
        before={"loss": 2.0, "reward": 0.1, "same": 1.0, "acc": 0.5},
        after={"loss": 1.5, "reward": 0.05, "same": 1.0, "acc": 0.6},
        change_stderr={"loss": 0.1, "reward": 0.01, "same": 0.0, "acc": 0.1},
        rows=12, lower_is_better=("loss",), notes=["a note"],
    )
    assert objective.improved("loss") is True
    assert objective.improved("reward") is False
    assert objective.improved("same") is None
    assert HeldOutObjective.from_dict(objective.to_dict()) == objective
    rows = objective_rows([("sft", objective)])
    assert rows[0] == ("sft", "12 rows", "loss", "2", "1.5", "-0.5 ± 0.2", "better")
    assert rows[1][-2:] == ("-0.05 ± 0.02", "worse") and rows[1][0] == ""
    assert rows[2][-1] == "unchanged"
    assert rows[3][-1] == "within noise"  # +0.1 with a 95% band of ±0.2
    text = objectives_markdown([("sft", objective)])
    assert "| sft | 12 rows | loss | 2 | 1.5 | -0.5 ± 0.2 | better |" in text and "- sft: a note" in text


def test_docstring_examples() -> None:
    assert doctest.testmod(objectives).failed == 0
