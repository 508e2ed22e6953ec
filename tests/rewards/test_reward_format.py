from __future__ import annotations

import pytest

from rewards.format import answer_line, matches_pattern


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("3 + 4 = 7\nAnswer: 7", 1.0),
        ("Answer: 7\n\n", 1.0),
        ("Answer: -1,000.5", 1.0),
        ("Answer: $7.", 1.0),
        ("Answer: 3/4", 1.0),
        ("Answer: 7\nThanks!", 0.0),
        ("The answer is 7", 0.0),
        ("Answer: seven", 0.0),
        ("Answer: 7 apples", 0.0),
        ("", 0.0),
    ],
)
def test_reward_answer_line(reply, score):
    assert answer_line([reply]) == [score]
    assert answer_line([[{"role": "assistant", "content": reply}]]) == [score]


def test_reward_matches_pattern_column_and_scalar():
    replies = ["<think>x</think>ok", "ok", "OK"]
    assert matches_pattern(replies, pattern=["<think>", "<think>", "^OK$"]) == [1.0, 0.0, 1.0]
    assert matches_pattern(replies, pattern=r"^ok$") == [0.0, 1.0, 0.0]
    assert matches_pattern(["a\nb"], pattern=r"a.b") == [1.0]  # DOTALL


def test_reward_matches_pattern_bad_regex():
    with pytest.raises(ValueError, match="invalid regular expression"):
        matches_pattern(["x"], pattern="(")
