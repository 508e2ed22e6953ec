"""A penalty for replies that run past a word budget."""

from __future__ import annotations

from typing import Any

from rewards._common import column, completion_text

__all__ = ["length_penalty"]


def length_penalty(completions: list[Any], max_words: Any = 200, **kwargs: Any) -> list[float]:
    """0.0 within ``max_words`` words; below that, minus the overshoot as a fraction.

    The score is ``-min(1, (words - max_words) / max_words)``, so it lies in
    [-1, 0]: a reply twice the budget or longer gets -1. Give it a positive
    weight next to a correctness reward so that brevity only breaks ties.
    ``max_words`` is a number or a dataset column.

    >>> length_penalty(["one two three", "one two three four five six"], max_words=4)
    [0.0, -0.5]
    """
    budgets = column(max_words, len(completions), "max_words")
    scores = []
    for c, budget in zip(completions, budgets, strict=True):
        budget = int(budget)
        if budget <= 0:
            raise ValueError(f"length_penalty: max_words must be positive, got {budget}")
        over = len(completion_text(c).split()) - budget
        scores.append(-min(1.0, over / budget) if over > 0 else 0.0)
    return scores
