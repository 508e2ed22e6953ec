"""What each stage bought: per task, the score, its delta vs the base and vs the stage's input.

Rows come in pipeline order, base model first. A stage's input is the row
named by `input` (by default the row before it). When both rows carry their
per-document results (`evidence`), each delta comes with a paired test on the
same documents (evaluation/stats.py). A stage whose typed facts name a model
it is compared with (a distilled student's teacher) also shows its retention:
score / that model's score, the model being a row (`StageFacts.reference_stage`)
or a model outside the pipeline whose scores the stage measured
(`StageFacts.reference_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from posttrain.evaluation.record import EvalEvidence, protocol_difference
from posttrain.evaluation.stats import DeltaTest, GainKept, TaskStats, gain_kept, paired_test
from posttrain.stagekit.facts import StageFacts


@dataclass
class StageScores:
    label: str
    """`base` or the stage's name."""
    scores: dict[str, float]
    """Task → headline score."""
    input: str | None = None
    """The row this stage started from (default: the row before it)."""
    facts: dict[str, StageFacts] = field(default_factory=dict)
    """The stage's typed facts by kind (`StageResult.facts`); each kind is a table of its own."""
    evidence: EvalEvidence | None = None
    """Stats and per-document results (None for evaluations kept before they were recorded)."""


@dataclass(frozen=True)
class Cell:
    score: float | None
    vs_base: float | None
    vs_input: float | None
    retention: float | None = None
    stats: TaskStats | None = None
    test_base: DeltaTest | None = None
    test_input: DeltaTest | None = None
    not_compared: dict[str, str] = field(default_factory=dict)
    """`base` / `input` → why no delta is shown against it (their evaluation protocols differ)."""
    gain_kept: GainKept | None = None
    """With retention against a row: the share of that row's gain over base kept, with its interval."""


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def reference_scores(row: StageScores, by_label: dict[str, StageScores]) -> dict[str, float] | None:
    """The scores `row` keeps a share of (retention): those its facts measured, or the row they name."""
    for fact in row.facts.values():
        if fact.reference_scores is not None:
            return fact.reference_scores
        reference = by_label.get(fact.reference_stage or "")
        if reference is not None:
            return reference.scores
    return None


def reference_row(row: StageScores, by_label: dict[str, StageScores]) -> StageScores | None:
    """The leaderboard row `row` keeps a share of, when its facts name one."""
    for fact in row.facts.values():
        if fact.reference_scores is None and fact.reference_stage in by_label:
            return by_label[fact.reference_stage]
    return None


def gain_kept_on(row: StageScores, reference: StageScores | None, base: StageScores, task: str) -> GainKept | None:
    """`gain_kept` of `row` against `reference` over `base` on `task`, when all three have per-document results
    taken under the same protocol."""
    evidence = [r.evidence for r in (row, reference, base) if r is not None]
    if reference is None or len(evidence) < 3 or any(e is None for e in evidence):
        return None
    if protocol_difference(row.evidence, reference.evidence, task) or protocol_difference(row.evidence, base.evidence, task):
        return None
    per_doc = [e.per_doc.get(task) for e in (base.evidence, reference.evidence, row.evidence)]
    if any(p is None for p in per_doc):
        return None
    return gain_kept(*per_doc)


def task_columns(rows: Sequence[StageScores]) -> list[str]:
    """Every task seen, in first-seen order."""
    seen: list[str] = []
    for row in rows:
        seen += [t for t in row.scores if t not in seen]
    return seen


def delta_test(row: StageScores, other: StageScores, task: str) -> DeltaTest | None:
    """The paired test of `row` against `other` on `task`; says why when there can be none."""
    if task not in row.scores or task not in other.scores:
        return None
    if row.evidence is None and other.evidence is None:
        return None  # scores kept before per-document results were: nothing to test, nothing to claim
    delta = row.scores[task] - other.scores[task]
    mine = row.evidence.per_doc.get(task) if row.evidence else None
    theirs = other.evidence.per_doc.get(task) if other.evidence else None
    if mine is None or theirs is None:
        missing = row if mine is None else other
        stats = missing.evidence.stats.get(task) if missing.evidence else None
        why = stats.note if stats and stats.note else f"{missing.label} has no per-document results for {task}"
        return DeltaTest(delta, None, None, 0, f"no paired significance: {why}")
    test = paired_test(theirs, mine)
    return DeltaTest(delta, test.test, test.p_value, test.n_paired, test.note)


def compute_cells(rows: Sequence[StageScores]) -> list[dict[str, Cell]]:
    """Per row, per task: score and deltas. The first row is the base."""
    if not rows:
        return []
    base_row = rows[0]
    base = base_row.scores
    by_label = {r.label: r for r in rows}
    out: list[dict[str, Cell]] = []
    for i, row in enumerate(rows):
        parent = by_label.get(row.input) if row.input is not None else None
        if parent is None and i > 0:
            parent = rows[i - 1]
        reference = reference_scores(row, by_label)
        kept_of = reference_row(row, by_label) if i > 0 else None
        cells = {}
        for task in task_columns(rows):
            score = row.scores.get(task)
            has_input = i > 1 and parent is not None and parent is not rows[0]
            # Scores taken under different protocols (documents, shots, template, settings) are not compared.
            not_compared = {
                against: why for against, other, wanted in (("base", base_row, i > 0), ("input", parent, has_input))
                if wanted and other is not None and task in row.scores and task in other.scores
                and (why := protocol_difference(row.evidence, other.evidence, task))
            }
            compare_base, compare_input = i > 0 and "base" not in not_compared, has_input and "input" not in not_compared
            cells[task] = Cell(
                score=score,
                vs_base=_delta(score, base.get(task)) if compare_base else None,
                vs_input=_delta(score, parent.scores.get(task)) if compare_input and parent else None,
                retention=_ratio(score, reference.get(task)) if reference is not None else None,
                stats=row.evidence.stats.get(task) if row.evidence else None,
                test_base=delta_test(row, base_row, task) if compare_base else None,
                test_input=delta_test(row, parent, task) if compare_input and parent else None,
                not_compared=not_compared,
                gain_kept=gain_kept_on(row, kept_of, base_row, task) if kept_of is not None else None,
            )
        out.append(cells)
    return out
