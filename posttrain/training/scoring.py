"""Recipe rewards made ready for training: resolved, named, column-checked and None-safe.

Shared by the grpo stage (TRL calls the functions) and on-policy DPO pairs
(we call them). A reward that needs a dataset column (`answer`,
`constraints`, ...) does not apply to a row where that column is missing:
it returns None there, which TRL treats as "no score" (NaN, left out of that
reward's logged mean and adding 0 to the weighted sum), instead of the
function crashing or inventing a score from nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.stagekit.specs import RewardSpec

# What TRL passes to every reward besides the dataset's columns.
TRAINER_KWARGS = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"})


@dataclass(frozen=True)
class Reward:
    name: str
    """Unique within the stage; TRL logs `rewards/<name>/mean` and `/std` under it."""
    fn: Callable[..., list[float | None]]
    """The recipe's function wrapped to skip rows lacking a needed column (see module doc)."""
    weight: float
    needs: tuple[str, ...]
    """Dataset columns the function requires (parameters without a default)."""


def load_rewards(specs: Sequence[RewardSpec], *, base_dir: Path | None) -> list[Reward]:
    from rewards import resolve_reward

    loaded: list[Reward] = []
    taken: set[str] = set()
    for spec in specs:
        raw = resolve_reward(spec.fn, base_dir=base_dir)
        name = _unique(getattr(raw, "__name__", "reward"), taken)
        needs = required_columns(raw)
        loaded.append(Reward(name=name, fn=none_safe(raw, needs, name), weight=spec.weight, needs=needs))
    return loaded


def required_columns(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Named parameters without a default, other than what the trainer itself passes.

    >>> def exact(completions, answer, tol=0.0, **kwargs): ...
    >>> required_columns(exact)
    ('answer',)
    """
    needed = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.default is not param.empty:
            continue
        if param.name not in TRAINER_KWARGS:
            needed.append(param.name)
    return tuple(needed)


def check_columns(rewards: Iterable[Reward], columns: set[str], dataset: str) -> None:
    """Fail before training when a reward needs a column no row of the dataset has."""
    problems = [
        f"reward {r.name!r} needs column {c!r}" for r in rewards for c in r.needs if c not in columns
    ]
    if problems:
        raise UserError(
            f"{'; '.join(problems)}, but dataset {dataset!r} has only {sorted(columns)}. "
            "Pick a reward that fits the data, or add the column."
        )


def none_safe(fn: Callable[..., list[float]], needs: tuple[str, ...], name: str) -> Callable[..., list[float | None]]:
    """`fn` called only on the rows that have every column in `needs`; None for the others."""

    def reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
        try:
            return scored(completions, **kwargs)
        except ValueError as exc:  # e.g. code_exec given a test it cannot grade from outside the program
            raise UserError(f"reward {name!r} cannot score a row of this dataset: {exc}") from exc

    def scored(completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        keep = [i for i in range(n) if all(_cell(kwargs.get(c), i, n) is not None for c in needs)]
        if len(keep) == n:
            return list(fn(completions, **kwargs))
        scores: list[float | None] = [None] * n
        if keep:
            subset = {k: _rows(v, keep, n) for k, v in kwargs.items()}
            for i, score in zip(keep, fn([completions[i] for i in keep], **subset), strict=True):
                scores[i] = score
        return scores

    reward.__name__ = reward.__qualname__ = name
    return reward


def weighted_total(scores: Sequence[Sequence[float | None]], weights: Sequence[float]) -> list[float | None]:
    """Per completion, Σ weight·score over the rewards that apply (as TRL sums them); None if none apply.

    >>> weighted_total([[1.0, 0.0, None], [1.0, None, None]], [1.0, 0.5])
    [1.5, 0.0, None]
    """
    totals: list[float | None] = []
    for per_reward in zip(*scores, strict=True):
        applied = [w * s for w, s in zip(weights, per_reward, strict=True) if s is not None]
        totals.append(sum(applied) if applied else None)
    return totals


def _cell(values: Any, i: int, n: int) -> Any:
    if isinstance(values, list) and len(values) == n:
        return values[i]
    return values  # absent (None) or one value broadcast to every row


def _rows(values: Any, keep: list[int], n: int) -> Any:
    return [values[i] for i in keep] if isinstance(values, list) and len(values) == n else values


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    taken.add(candidate)
    return candidate
