from __future__ import annotations

import pytest

from rewards.length import length_penalty


def test_reward_length_penalty_range():
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    scores = length_penalty([words(0), words(10), words(15), words(20), words(100)], max_words=10)
    assert scores == [0.0, 0.0, -0.5, -1.0, -1.0]
    assert all(-1.0 <= s <= 0.0 for s in scores)


def test_reward_length_penalty_column_and_default():
    assert length_penalty(["a b c", "a b c"], max_words=[2, 3]) == [-0.5, 0.0]
    assert length_penalty(["short"]) == [0.0]
    assert length_penalty([[{"role": "assistant", "content": "a b c d"}]], max_words=2) == [-1.0]


def test_reward_length_penalty_rejects_bad_budget():
    with pytest.raises(ValueError, match="positive"):
        length_penalty(["a"], max_words=0)
