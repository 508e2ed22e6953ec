"""Typed facts a stage reports beside its metrics, read by the leaderboard (no shared string keys).

A fact type is declared by the stage type that returns it (`StageType.facts`)
and says itself how the leaderboard shows it: the table's title and columns,
the row's cells, and which model its scores are compared with (retention =
score / that model's score). The leaderboard knows no stage type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class StageFacts(Protocol):
    """What a fact type provides; a frozen dataclass with these class attributes and methods is one."""

    kind: ClassVar[str]
    """Key under stage.json `facts` (and of `StageResult.facts`)."""
    title: ClassVar[str]
    """Heading of the leaderboard table that lists every stage with facts of this kind."""
    legend: ClassVar[str]
    """One line under the title: how to read the columns."""
    columns: ClassVar[tuple[str, ...]]
    """Column names after `stage`, one per cell of `cells`."""

    @property
    def reference_stage(self) -> str | None:
        """The leaderboard row whose scores this stage's are compared with (retention), when it is one."""

    @property
    def reference_scores(self) -> dict[str, float] | None:
        """Scores to compare with that were measured outside the pipeline (a teacher by model reference)."""

    def cells(self, retention: float | None) -> tuple[str, ...]:
        """The row's cells; `retention` is the stage's mean score / reference score, when known."""

    def to_dict(self) -> dict[str, Any]: ...


def facts_to_json(facts: Mapping[str, StageFacts]) -> dict[str, Any]:
    return {kind: fact.to_dict() for kind, fact in facts.items()}


def facts_from_json(data: Mapping[str, Any] | None, types: Mapping[str, type]) -> dict[str, Any]:
    """Facts read back from stage.json; `types` is kind → fact type (every registered stage type's `facts`).
    A kind no registered type declares is skipped: its stage type is gone, its facts cannot be shown."""
    return {kind: types[kind](**value) for kind, value in (data or {}).items() if kind in types}
