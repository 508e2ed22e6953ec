"""`DistillFacts`: what a distilled student costs and keeps, as the distill stage reports it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class DistillFacts:
    """What a distilled student costs and what it learned from (a `StageFacts` type)."""

    kind: ClassVar[str] = "distill"
    title: ClassVar[str] = "distillation"
    legend: ClassVar[str] = "retention = student score / teacher score"
    columns: ClassVar[tuple[str, ...]] = (
        "teacher", "params teacher → student", "tokens/s teacher → student", "mean retention",
    )

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

    @property
    def reference_stage(self) -> str | None:
        return self.teacher_stage

    @property
    def reference_scores(self) -> dict[str, float] | None:
        return self.teacher_scores

    def cells(self, retention: float | None) -> tuple[str, ...]:
        return (
            self.teacher,
            f"{self.teacher_params / 1e6:.1f}M → {self.student_params / 1e6:.1f}M (×{self.param_ratio:.2f})",
            f"{self.teacher_tokens_per_s:.0f} → {self.student_tokens_per_s:.0f} (×{self.speedup:.2f})",
            f"{retention:.2f}" if retention is not None else "–",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
