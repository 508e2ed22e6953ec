"""Rewards for following checkable instructions (IFEval-style constraints)."""

from __future__ import annotations

import json
import re
from typing import Any

from rewards._common import column, completion_text

__all__ = ["CONSTRAINT_KEYS", "follows_constraints"]

CONSTRAINT_KEYS = ("max_words", "min_words", "case", "keywords", "json", "bullets")
_BULLET = re.compile(r"^\s*[-*•]\s+")
_FENCE = re.compile(r"\A```(?:json)?\s*\n(.*?)\n?```\Z", re.DOTALL)


def follows_constraints(completions: list[Any], constraints: Any, **kwargs: Any) -> list[float]:
    """The fraction of a row's constraints that the reply satisfies.

    ``constraints`` is a dataset column whose values are dicts (or the same
    as a JSON string) with any subset of these keys:

    - ``max_words`` / ``min_words`` (int): whitespace-separated word count bounds;
    - ``case`` (``"lower"`` | ``"upper"``): no letter of the other case;
    - ``keywords`` (list of str): every keyword appears, case-insensitively;
    - ``json`` (true): the whole reply (a ```json fence allowed) parses as JSON;
    - ``bullets`` (int): exactly that many lines start with ``-``, ``*`` or ``•``
      followed by a space (so ``**bold**`` and ``---`` are not bullets).

    Each key counts once. An empty dict scores 1.0; an unknown key or a bad
    value raises ``ValueError``.

    >>> follows_constraints(["- apples\\n- pears"], constraints=[{"case": "lower", "bullets": 2, "max_words": 3}])
    [0.6666666666666666]
    >>> follows_constraints(['{"a": 1}'], constraints=['{"json": true}'])
    [1.0]
    """
    rows = column(constraints, len(completions), "constraints")
    return [_fraction(completion_text(c), _as_dict(spec)) for c, spec in zip(completions, rows, strict=True)]


def _as_dict(spec: Any) -> dict[str, Any]:
    if spec is None:
        return {}
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"follows_constraints: constraints are not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"follows_constraints: constraints must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(CONSTRAINT_KEYS))
    if unknown:
        raise ValueError(f"follows_constraints: unknown constraint keys {unknown}; known: {list(CONSTRAINT_KEYS)}")
    # Datasets stored as Arrow fill absent struct fields with None: treat as absent.
    return {k: v for k, v in spec.items() if v is not None}


def _fraction(text: str, spec: dict[str, Any]) -> float:
    if not spec:
        return 1.0
    return sum(_check(text, key, value) for key, value in spec.items()) / len(spec)


def _check(text: str, key: str, value: Any) -> bool:
    if key == "max_words":
        return len(text.split()) <= int(value)
    if key == "min_words":
        return len(text.split()) >= int(value)
    if key == "case":
        if value not in ("lower", "upper"):
            raise ValueError(f"follows_constraints: case must be 'lower' or 'upper', got {value!r}")
        return text == (text.lower() if value == "lower" else text.upper())
    if key == "keywords":
        if isinstance(value, str):
            value = [value]
        lowered = text.lower()
        return all(str(k).lower() in lowered for k in value)
    if key == "json":
        return _is_json(text) == bool(value)
    if key == "bullets":
        return sum(1 for line in text.splitlines() if _BULLET.match(line)) == int(value)
    raise AssertionError(key)  # _as_dict already rejected unknown keys


def _is_json(text: str) -> bool:
    text = text.strip()
    fenced = _FENCE.match(text)
    try:
        json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    return True
