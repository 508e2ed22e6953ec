"""Pair construction and reward plumbing: pure functions on crafted inputs."""

from __future__ import annotations

import doctest
import importlib

import pytest

from posttrain.errors import UserError
from posttrain.stagekit.specs import RewardSpec
from posttrain.training.pairs import best_and_worst, build_pairs
from posttrain.training.scoring import check_columns, load_rewards, none_safe, required_columns


def test_best_and_worst_picks_the_max_and_the_min() -> None:
    assert best_and_worst(["mid", "top", "low", "mid2"], [0.5, 0.9, -1.0, 0.4]) == ("top", "low")


@pytest.mark.parametrize("scores", [[1.0, 1.0, 1.0], [0.0, 0.0], [2.0], []])
def test_best_and_worst_is_none_when_nothing_separates_the_samples(scores: list[float]) -> None:
    assert best_and_worst([f"c{i}" for i in range(len(scores))], scores) is None


def test_best_and_worst_takes_the_first_of_equal_scores() -> None:
    completions = ["a", "b", "c", "d", "e"]
    assert best_and_worst(completions, [0.0, 1.0, 0.0, 1.0, 0.5]) == ("b", "a")
    # Duplicated texts are fine: the pair is still the first max and the first min.
    assert best_and_worst(["x", "x", "y"], [1.0, 1.0, 0.0]) == ("x", "y")


def test_best_and_worst_ignores_unscored_samples() -> None:
    assert best_and_worst(["a", "b", "c"], [None, 1.0, 0.0]) == ("b", "c")
    assert best_and_worst(["a", "b", "c"], [None, 1.0, float("nan")]) is None


def test_build_pairs_counts_kept_ties_and_unscored() -> None:
    rewards = load_rewards([RewardSpec(fn="rewards.math:exact_number")], base_dir=None)
    prompt = [{"role": "user", "content": "2+2?"}]
    rows = [
        {"prompt": prompt, "answer": "4"},
        {"prompt": prompt, "answer": "5"},  # no sample says 5: all score 0, a tie
        {"prompt": prompt, "answer": None},  # exact_number does not apply: unscored
    ]
    samples = [["Answer: 3", "Answer: 4", "4!"], ["Answer: 4"] * 3, ["Answer: 4"] * 3]
    pairs, counts = build_pairs(rows, samples, rewards)
    assert pairs == [
        {"prompt": prompt, "chosen": "Answer: 4", "rejected": "Answer: 3", "chosen_score": 1.0, "rejected_score": 0.0}
    ]
    assert (counts.prompts, counts.pairs, counts.ties, counts.unscored) == (3, 1, 1, 1)
    assert counts.as_metrics()["pairs_pairs"] == 1


def test_weights_decide_the_ranking() -> None:
    specs = [RewardSpec(fn="exact_number", weight=1.0), RewardSpec(fn="answer_line", weight=0.25)]
    rewards = load_rewards(specs, base_dir=None)
    rows = [{"prompt": [{"role": "user", "content": "6?"}], "answer": "6"}]
    # "6" is right without the format (1.0); "Answer: 7" has the format only (0.25); "x" has nothing.
    pairs, _ = build_pairs(rows, [["Answer: 7", "6", "x"]], rewards)
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == ("6", "x")


def test_a_reward_that_crashes_on_missing_values_is_skipped_on_those_rows() -> None:
    def strict(completions, answer, **kwargs):
        return [float(len(c) == int(a)) for c, a in zip(completions, answer, strict=True)]

    assert required_columns(strict) == ("answer",)
    wrapped = none_safe(strict, ("answer",), "strict")
    assert wrapped.__name__ == "strict"
    scores = wrapped(["ab", "abc", "x"], answer=["2", None, "3"], prompts=["p", "q", "r"], trainer_state=object())
    assert scores == [1.0, None, 0.0]
    assert wrapped(["ab"], answer=[None]) == [None]
    assert wrapped(["ab"]) == [None]  # the column is absent altogether


def test_a_reward_needing_a_column_the_data_lacks_fails_before_training() -> None:
    rewards = load_rewards([RewardSpec(fn="follows_constraints"), RewardSpec(fn="answer_line")], base_dir=None)
    check_columns(rewards, {"constraints"}, "prompts")
    with pytest.raises(UserError, match="'follows_constraints' needs column 'constraints'"):
        check_columns(rewards, {"answer"}, "prompts")


def test_reward_names_stay_unique_for_trl_logs() -> None:
    rewards = load_rewards([RewardSpec(fn="exact_number"), RewardSpec(fn="rewards.math:exact_number")], base_dir=None)
    assert [r.name for r in rewards] == ["exact_number", "exact_number_2"]
    assert [r.fn.__name__ for r in rewards] == ["exact_number", "exact_number_2"]


@pytest.mark.parametrize("name", ["posttrain.training.pairs", "posttrain.training.scoring", "posttrain.stages.grpo",
                                  "posttrain.training.shared_prompts"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def test_a_reward_that_cannot_grade_a_row_stops_with_a_user_error_naming_it() -> None:
    def picky(completions, **kwargs):
        raise ValueError("test 'for x in y: assert f(x)' cannot be graded outside the program")

    with pytest.raises(UserError, match="reward 'picky' cannot score a row of this dataset: test 'for x"):
        none_safe(picky, (), "picky")(["a"])
