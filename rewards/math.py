"""Rewards for answers with a single verifiable number.

The final answer is looked for, in order: after the last ``Answer:``, inside
the last ``\\boxed{...}``, then as the last number anywhere in the text.
Numbers compare exactly as fractions, so ``3``, ``3.0``, ``$3``, ``3.`` and
``6/2`` are all equal, and ``1,000`` is one thousand.
"""

from __future__ import annotations

import re
import warnings
from fractions import Fraction
from typing import Any

from rewards._common import column, completion_text

__all__ = ["exact_number", "extract_number", "math_equivalent", "parse_number"]

# Thousands separators only in well-formed groups, so "1,2" is two numbers.
_NUMBER = re.compile(
    r"(?<![\w.])([-−]?)\s*\$?\s*"
    r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)"
    r"(?:\s*/\s*(\d+)(?![\d.]))?"
)
_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:：]", re.IGNORECASE)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` as an exact fraction, or ``None``.

    >>> parse_number("$1,000.50")
    Fraction(2001, 2)
    >>> parse_number("-3/4 of it")
    Fraction(-3, 4)
    >>> parse_number("no digits") is None
    True
    """
    numbers = _numbers(text)
    return numbers[0] if numbers else None


def extract_number(text: str) -> Fraction | None:
    """The final answer of a reply as a fraction, or ``None`` if there is none.

    >>> extract_number("2 + 2 = 4, so... Answer: 4.")
    Fraction(4, 1)
    >>> extract_number(r"The total is \\boxed{\\frac{1}{2}}")
    Fraction(1, 2)
    >>> extract_number("first 3 then 7")
    Fraction(7, 1)
    """
    text = _unlatex(text)
    marks = list(_ANSWER.finditer(text))
    if marks:
        found = parse_number(text[marks[-1].end():])
        if found is not None:
            return found
    boxed = _last_boxed(text)
    if boxed is not None and (found := parse_number(boxed)) is not None:
        return found
    numbers = _numbers(text)
    return numbers[-1] if numbers else None


def exact_number(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the reply's final number equals ``answer`` exactly, else 0.0.

    ``answer`` is a dataset column (one value per completion); its values may
    be numbers or text such as ``"1,000"`` or ``"#### 72"`` (the last number
    counts).

    >>> exact_number(["... Answer: 14", "Answer: 1,000.", "I think 13"], answer=["14", 1000, "14"])
    [1.0, 1.0, 0.0]
    >>> exact_number([[{"role": "assistant", "content": "So $\\\\boxed{-3}$"}]], answer=["-3.0"])
    [1.0]
    """
    answers = column(answer, len(completions), "answer")
    return [_score(completion_text(c), a) for c, a in zip(completions, answers, strict=True)]


_warned_no_math_verify = False


def math_equivalent(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """1.0 when the reply is mathematically equivalent to ``answer`` (via math-verify).

    Uses the optional ``math-verify`` package (``pip install posttrain[math]``),
    which understands LaTeX, sets, intervals and symbolic expressions. Without
    it this falls back to :func:`exact_number`, with a one-time warning.

    >>> math_equivalent([r"Answer: \\boxed{\\frac{1}{2}}"], answer=["0.5"])
    [1.0]
    """
    global _warned_no_math_verify
    try:
        from math_verify import parse, verify
    except ImportError:
        if not _warned_no_math_verify:
            _warned_no_math_verify = True
            warnings.warn("math_equivalent: math-verify is not installed; using exact_number instead",
                          RuntimeWarning, stacklevel=2)
        return exact_number(completions, answer)
    answers = column(answer, len(completions), "answer")
    scores = []
    for c, a in zip(completions, answers, strict=True):
        text = completion_text(c)
        try:
            ok = verify(parse(str(a)), parse(text))
        except Exception:  # math-verify raises on odd input; an unparsable reply earns nothing
            ok = False
        # math-verify needs LaTeX or a boxed answer; a plain "Answer: 14" still counts.
        scores.append(1.0 if ok else _score(text, a))
    return scores


def _score(text: str, answer: Any) -> float:
    expected = Fraction(answer) if isinstance(answer, int) else _answer_number(answer)
    got = extract_number(text)
    return 1.0 if expected is not None and got is not None and got == expected else 0.0


def _answer_number(answer: Any) -> Fraction | None:
    if isinstance(answer, float):
        return Fraction(str(answer))
    numbers = _numbers(_unlatex(str(answer)))
    return numbers[-1] if numbers else None


def _numbers(text: str) -> list[Fraction]:
    out = []
    for m in _NUMBER.finditer(text):
        sign, digits, denom = m.groups()
        value = Fraction(digits.replace(",", ""))
        if denom is not None:
            if int(denom) == 0:
                continue
            value /= int(denom)
        out.append(-value if sign else value)
    return out


def _unlatex(text: str) -> str:
    text = _FRAC.sub(r"\1/\2", text)
    return text.replace("\\!", "").replace("{,}", ",").replace("\\$", "$")


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return text[i:]
