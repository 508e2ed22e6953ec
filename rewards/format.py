"""Rewards for the shape of a reply rather than its correctness."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from rewards._common import column, completion_text

__all__ = ["answer_line", "matches_pattern"]

_ANSWER_LINE = re.compile(r"Answer:\s*[-−]?\s*\$?\s*(\d{1,3}(,\d{3})+|\d+)(\.\d+)?(\s*/\s*\d+)?\.?")


def answer_line(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the reply's last non-empty line is ``Answer: <number>``, else 0.0.

    >>> answer_line(["Two threes make six.\\nAnswer: 6", "Answer: 6\\nHope that helps!", "Answer: six"])
    [1.0, 0.0, 0.0]
    """
    scores = []
    for c in completions:
        lines = [line.strip() for line in completion_text(c).splitlines() if line.strip()]
        scores.append(1.0 if lines and _ANSWER_LINE.fullmatch(lines[-1]) else 0.0)
    return scores


def matches_pattern(completions: list[Any], pattern: Any, **kwargs: Any) -> list[float]:
    """1.0 when the regular expression ``pattern`` is found in the reply, else 0.0.

    ``pattern`` is a dataset column (one pattern per row) or a single string
    for every row. It is searched with ``re.search`` under ``re.DOTALL`` and
    ``re.MULTILINE``; anchor it (``^...$`` or ``\\A...\\Z``) to demand a
    whole-reply match.

    >>> matches_pattern(["<think>hm</think> 42", "42"], pattern=r"\\A<think>.*</think>")
    [1.0, 0.0]
    """
    patterns = column(pattern, len(completions), "pattern")
    return [1.0 if _compiled(p).search(completion_text(c)) else 0.0
            for c, p in zip(completions, patterns, strict=True)]


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.DOTALL | re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"matches_pattern: invalid regular expression {pattern!r}: {exc}") from None
