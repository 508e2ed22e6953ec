from __future__ import annotations

import builtins
from fractions import Fraction

import pytest

import rewards.math as rmath
from rewards.math import exact_number, extract_number, math_equivalent


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Answer: 14", "14"),
        ("So the total is 1,000 apples.\nAnswer: 1,000", "1000"),
        ("Answer: $42.", "42"),
        ("Answer: -3", "-3"),
        ("Answer: 3.0", "3"),
        ("Answer: 3", "3.0"),
        ("the answer is: 7", "7"),
        ("We get $\\boxed{12}$.", "12"),
        ("We get \\boxed{\\frac{3}{4}}", "0.75"),
        ("Answer: 1/2", "0.5"),
        ("Answer: −5", "-5"),  # unicode minus
        ("I first thought 3 but it is 9", "9"),
        ("Answer: 2,500,000", "2500000"),
        ("Answer: 12", 12),
        ("Answer: 0.1", 0.1),
        ("#### 72", "#### 72"),
        ("Answer: 5 apples, not 6", "5"),
    ],
)
def test_reward_exact_number_accepts(reply, answer):
    assert exact_number([reply], answer=[answer]) == [1.0]


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Answer: 15", "14"),
        ("no number at all", "14"),
        ("", "14"),
        ("Answer: 1,2", "12"),  # not a thousands separator
        ("Answer: 14", "not a number"),
        ("Answer: 3.01", "3"),
        ("Answer: 3", "-3"),
        ("Answer: 14 ... wait, Answer: 15", "14"),  # the last Answer: counts
    ],
)
def test_reward_exact_number_rejects(reply, answer):
    assert exact_number([reply], answer=[answer]) == [0.0]


def test_reward_exact_number_conversational_and_batch():
    completions = [[{"role": "assistant", "content": "Answer: 4"}], "Answer: 5", None]
    assert exact_number(completions, answer=["4", "4", "4"], prompts=["a", "b", "c"], extra=[1, 2, 3]) == [
        1.0, 0.0, 0.0]


def test_reward_exact_number_misaligned_column():
    with pytest.raises(ValueError, match="answer"):
        exact_number(["Answer: 1", "Answer: 2"], answer=["1"])


def test_reward_extract_number_priorities():
    assert extract_number("Answer: 3, boxed \\boxed{4}, last 5") == 3
    assert extract_number("boxed \\boxed{4}, last 5") == 4
    assert extract_number("x 1e3") == 1000
    assert extract_number("nothing") is None
    assert extract_number("divide by 1/0 then 2") == 2
    assert isinstance(extract_number("Answer: 7"), Fraction)


def test_reward_math_equivalent_with_math_verify():
    pytest.importorskip("math_verify")
    replies = ["\\boxed{\\frac{1}{2}}", "Answer: 14", "\\boxed{x + 1}", "Answer: 13"]
    assert math_equivalent(replies, answer=["0.5", "14", "$1 + x$", "14"]) == [1.0, 1.0, 1.0, 0.0]


def test_reward_math_equivalent_falls_back_once(monkeypatch):
    real_import = builtins.__import__

    def no_math_verify(name, *args, **kwargs):
        if name.startswith("math_verify"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_math_verify)
    monkeypatch.setattr(rmath, "_warned_no_math_verify", False)
    with pytest.warns(RuntimeWarning, match="math-verify is not installed"):
        assert math_equivalent(["Answer: 3.0"], answer=["3"]) == [1.0]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math_equivalent(["Answer: 2"], answer=["3"]) == [0.0]
