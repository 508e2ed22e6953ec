"""`quality`: heuristic filters on the answer text (what the model would learn to say)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from data_prep.operators.base import OpContext, Operator, OpResult, StrictSpec
from data_prep.rows import Row, answer_texts
from data_prep.text import words


class QualitySpec(StrictSpec):
    min_answer_chars: int | None = Field(
        default=1, ge=0, description="Drop rows whose answer has fewer non-space characters."
    )
    max_repetition: float | None = Field(
        default=0.3, gt=0, le=1, description="Drop answers whose share of repeated word 3-grams exceeds this."
    )
    max_symbol_ratio: float | None = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Drop answers whose share of non-alphanumeric characters exceeds this.",
    )
    drop_truncated: bool = Field(
        default=True,
        description="Drop answers that look cut off (open code fence, trailing comma/connective).",
    )


# Words a finished answer practically never ends on.
_DANGLING = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "to",
        "with",
        "for",
        "in",
        "on",
        "at",
        "by",
        "from",
        "is",
        "are",
        "was",
        "that",
        "which",
        "because",
    ]
)
_TRAILING_OPEN = tuple(",:;([{-")
_MIN_WORDS_FOR_REPETITION = 12


def repetition(text: str) -> float:
    """Share of word 3-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    w = words(text)
    if len(w) < _MIN_WORDS_FOR_REPETITION:
        return 0.0
    grams = list(zip(w, w[1:], w[2:], strict=False))
    return 1 - len(set(grams)) / len(grams)


def symbol_ratio(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if not c.isalnum()) / len(chars)


def looks_truncated(text: str) -> str | None:
    t = text.rstrip()
    if t.count("```") % 2:
        return "unclosed code fence"
    if t.endswith(_TRAILING_OPEN):
        return f"ends with {t[-1]!r}"
    last = re.findall(r"[A-Za-z]+$", t)
    if last and last[0].lower() in _DANGLING:
        return f"ends with {last[0]!r}"
    return None


def check(answer: str, spec: QualitySpec) -> tuple[str, str] | None:
    if spec.min_answer_chars is not None and len(answer.strip()) < spec.min_answer_chars:
        return "short_answer", f"{len(answer.strip())} chars < min_answer_chars={spec.min_answer_chars}"
    if spec.max_repetition is not None and (r := repetition(answer)) > spec.max_repetition:
        return "repetitive", f"{r:.0%} repeated 3-grams > {spec.max_repetition:.0%}"
    if spec.max_symbol_ratio is not None and (s := symbol_ratio(answer)) > spec.max_symbol_ratio:
        return "symbols", f"{s:.0%} symbol characters > {spec.max_symbol_ratio:.0%}"
    if spec.drop_truncated and (why := looks_truncated(answer)):
        return "truncated", why
    return None


def quality_filter(rows: list[Row], spec: QualitySpec, ctx: OpContext) -> OpResult:
    if ctx.kind == "prompt":
        # RL prompts carry no model answer: judge the last user turn, and a
        # prompt ending in ':' is normal ("Solve the following:").
        spec = spec.model_copy(update={"drop_truncated": False})
    result = OpResult(kept=[])
    for row in rows:
        if ctx.kind == "prompt":
            candidates = [row.data["prompt"][-1]["content"]]
        else:
            candidates = answer_texts(row.data, ctx.kind)
        problem = next((p for a in candidates if (p := check(a, spec))), None)
        if problem is None:
            result.kept.append(row)
        else:
            result.removed.append((row, *problem))
    return result


def _default(value: Any) -> Any:
    return {} if value in ("default", None) else value


OPERATOR = Operator(
    name="quality",
    spec=QualitySpec,
    apply=quality_filter,
    description="Heuristic quality filters; `default` uses the defaults.",
    short_forms=_default,
)
