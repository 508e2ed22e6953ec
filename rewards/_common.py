"""Helpers shared by the reward modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["column", "completion_text"]


def completion_text(completion: Any) -> str:
    """The text of one completion, plain or conversational.

    TRL's GRPOTrainer hands over plain strings for standard datasets and a
    list of messages for conversational ones; content may itself be a list of
    typed parts.

    >>> completion_text("Answer: 4")
    'Answer: 4'
    >>> completion_text([{"role": "assistant", "content": "Answer: 4"}])
    'Answer: 4'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}])
    'hi'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        # Only what the model said counts; tool or user turns are not its answer.
        parts = [_content_text(m.get("content")) for m in completion
                 if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "\n".join(p for p in parts if p)
    return str(completion)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def column(values: Any, n: int, name: str) -> list[Any]:
    """Broadcast a per-row column (list) or a single value to ``n`` rows.

    >>> column(5, 2, "max_words")
    [5, 5]
    >>> column(["a", "b"], 2, "answer")
    ['a', 'b']
    """
    if isinstance(values, (list, tuple)):
        if len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
        return list(values)
    return [values] * n
