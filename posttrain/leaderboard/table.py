"""What each stage bought: per task, the score, its delta vs the base and vs the stage's input.

Rows come in pipeline order, base model first. A stage's input is the row
named by `input` (by default the row before it). A distilled student also
shows its retention: student score / teacher score, the teacher being a row
(`DistillFacts.teacher_stage`) or a model outside the pipeline whose scores the
stage measured (`DistillFacts.teacher_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posttrain.stagekit.facts import DistillFacts


@dataclass
class StageScores:
    label: str
    """`base` or the stage's name."""
    scores: dict[str, float]
    """Task → headline score."""
    input: str | None = None
    """The row this stage started from (default: the row before it)."""
    distill: DistillFacts | None = None


@dataclass(frozen=True)
class Cell:
    score: float | None
    vs_base: float | None
    vs_input: float | None
    retention: float | None = None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def teacher_scores(row: StageScores, by_label: dict[str, StageScores]) -> dict[str, float] | None:
    if row.distill is None:
        return None
    if row.distill.teacher_scores is not None:
        return row.distill.teacher_scores
    teacher = by_label.get(row.distill.teacher_stage or "")
    return teacher.scores if teacher is not None else None


def task_columns(rows: Sequence[StageScores]) -> list[str]:
    """Every task seen, in first-seen order."""
    seen: list[str] = []
    for row in rows:
        seen += [t for t in row.scores if t not in seen]
    return seen


def compute_cells(rows: Sequence[StageScores]) -> list[dict[str, Cell]]:
    """Per row, per task: score and deltas. The first row is the base."""
    if not rows:
        return []
    base = rows[0].scores
    by_label = {r.label: r for r in rows}
    out: list[dict[str, Cell]] = []
    for i, row in enumerate(rows):
        parent = by_label.get(row.input) if row.input is not None else None
        if parent is None and i > 0:
            parent = rows[i - 1]
        teacher = teacher_scores(row, by_label)
        cells = {}
        for task in task_columns(rows):
            score = row.scores.get(task)
            cells[task] = Cell(
                score=score,
                vs_base=_delta(score, base.get(task)) if i > 0 else None,
                vs_input=_delta(score, parent.scores.get(task)) if i > 1 and parent is not rows[0] else None,
                retention=_ratio(score, teacher.get(task)) if teacher is not None else None,
            )
        out.append(cells)
    return out
