"""Typed facts a stage reports beside its metrics, read by the leaderboard (no shared string keys)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DistillFacts:
    """What a distilled student costs and what it learned from."""

    teacher: str
    """The teacher as the recipe named it (a stage, `base`, or a model reference)."""
    teacher_params: int
    student_params: int
    teacher_tokens_per_s: float
    student_tokens_per_s: float
    teacher_stage: str | None = None
    """The pipeline stage the teacher is, when it is one (its scores are on the leaderboard)."""
    teacher_scores: dict[str, float] | None = None
    """Scores measured for a teacher outside the pipeline."""

    @property
    def param_ratio(self) -> float:
        return self.student_params / self.teacher_params

    @property
    def speedup(self) -> float:
        return self.student_tokens_per_s / self.teacher_tokens_per_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FACT_TYPES: dict[str, type] = {"distill": DistillFacts}
"""Kind → fact type, for reading facts back from stage.json."""


def facts_to_json(facts: dict[str, Any]) -> dict[str, Any]:
    return {kind: fact.to_dict() for kind, fact in facts.items()}


def facts_from_json(data: dict[str, Any] | None) -> dict[str, Any]:
    return {kind: FACT_TYPES[kind](**value) for kind, value in (data or {}).items() if kind in FACT_TYPES}
