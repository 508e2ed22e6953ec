"""Retention (student score / teacher score) on the leaderboard, and the distillation summary."""

from __future__ import annotations

import pytest

from posttrain.distill.facts import DistillFacts
from posttrain.evaluation.record import EvalEvidence
from posttrain.evaluation.stats import gain_kept
from posttrain.leaderboard.render import fact_tables, facts_markdown, facts_rich_tables, markdown_table
from posttrain.leaderboard.table import StageScores, compute_cells
from posttrain.stagekit.facts import StageFacts, facts_from_json, facts_to_json
from posttrain.stages import STAGES, fact_types

FROM_SFT = DistillFacts(
    teacher="sft", teacher_stage="sft", teacher_params=134_515_008, student_params=81_419_328,
    teacher_tokens_per_s=100.0, student_tokens_per_s=180.0,
)
OUTSIDE = DistillFacts(
    teacher="org/big", teacher_params=200, student_params=100, teacher_tokens_per_s=50.0,
    student_tokens_per_s=75.0, teacher_scores={"pt_arith": 0.40},
)
ROWS = [
    StageScores("base", {"pt_arith": 0.20, "pt_arith_mc": 0.50}),
    StageScores("sft", {"pt_arith": 0.40, "pt_arith_mc": 0.60}),
    StageScores("distill", {"pt_arith": 0.30, "pt_arith_mc": 0.45}, input="sft", facts={"distill": FROM_SFT}),
    StageScores("outside", {"pt_arith": 0.10}, input="base", facts={"distill": OUTSIDE}),
]


def test_retention_is_student_over_teacher_per_task() -> None:
    cells = compute_cells(ROWS)
    assert cells[1]["pt_arith"].retention is None  # not distilled
    assert cells[2]["pt_arith"].retention == pytest.approx(0.75)
    assert cells[2]["pt_arith_mc"].retention == pytest.approx(0.75)
    assert cells[3]["pt_arith"].retention == pytest.approx(0.25)  # teacher scored inside the stage
    assert cells[3]["pt_arith_mc"].retention is None
    assert "0.300<br>+0.100 vs base<br>-0.100 vs input<br>retention 0.75" in markdown_table(ROWS)


def test_distill_summary_reads_the_typed_facts() -> None:
    assert fact_tables(ROWS) == [(DistillFacts, [
        ("distill", "sft", "134.5M → 81.4M (×0.61)", "100 → 180 (×1.80)", "0.75"),
        ("outside", "org/big", "0.0M → 0.0M (×0.50)", "50 → 75 (×1.50)", "0.25"),
    ])]
    md = facts_markdown(ROWS)
    assert md.startswith("## distillation\n\nretention = student score / teacher score\n")
    assert "| stage | teacher | params teacher → student | tokens/s teacher → student | mean retention |" in md
    assert "| distill | sft | 134.5M → 81.4M (×0.61) | 100 → 180 (×1.80) | 0.75 |" in md
    assert facts_markdown(ROWS[:2]) == "" and facts_rich_tables(ROWS[:2]) == []
    [table] = facts_rich_tables(ROWS)
    assert table.title == "distillation (retention = student score / teacher score)"


def test_the_distill_stage_declares_its_facts() -> None:
    assert STAGES["distill"].facts == (DistillFacts,)
    assert isinstance(FROM_SFT, StageFacts)
    assert fact_types()["distill"] is DistillFacts


def test_facts_survive_stage_json() -> None:
    facts = {"distill": FROM_SFT}
    assert facts_from_json(facts_to_json(facts), fact_types()) == facts
    assert facts_from_json({"gone": {"x": 1}, **facts_to_json(facts)}, fact_types()) == facts  # a removed type


def _evidence(correct: set[int], n: int = 100, protocol: dict | None = None) -> EvalEvidence:
    per_doc = {f"pt_arith:{i}": 1.0 if i in correct else 0.0 for i in range(n)}
    return EvalEvidence(per_doc={"pt_arith": per_doc}, protocol={"pt_arith": protocol or {"limit": n}})


def _paired_rows(student_protocol: dict | None = None) -> list[StageScores]:
    base, teacher, student = set(range(2)), set(range(22)), set(range(12))  # gains +0.20 and +0.10
    return [
        StageScores("base", {"pt_arith": 0.02}, evidence=_evidence(base)),
        StageScores("sft", {"pt_arith": 0.22}, evidence=_evidence(teacher)),
        StageScores("distill", {"pt_arith": 0.12}, input="sft", facts={"distill": FROM_SFT},
                    evidence=_evidence(student, protocol=student_protocol)),
    ]


def test_the_student_keeps_a_share_of_the_teachers_gain_with_its_interval() -> None:
    rows = _paired_rows()
    kept = compute_cells(rows)[2]["pt_arith"].gain_kept
    assert kept.share == pytest.approx(0.5) and kept.n == 100  # (0.12 − 0.02) / (0.22 − 0.02)
    assert kept.low < 0.5 < kept.high and kept.high < 1.0  # nested answers: the student never gets more right
    assert kept == gain_kept(*(r.evidence.per_doc["pt_arith"] for r in rows))
    assert f"keeps 50% of the gain [{kept.low:.0%}, {kept.high:.0%}]" in markdown_table(rows)
    assert compute_cells(rows)[1]["pt_arith"].gain_kept is None  # not distilled


def test_no_gain_share_across_protocols_or_without_a_gain() -> None:
    assert compute_cells(_paired_rows({"limit": 50}))[2]["pt_arith"].gain_kept is None
    docs = {str(i): 0.0 for i in range(20)}
    assert gain_kept(docs, docs, docs) is None  # the teacher gained nothing: nothing to keep
    noisy_teacher = {**docs, "0": 1.0}  # one document: a gain within noise bounds no share
    kept = gain_kept(docs, noisy_teacher, docs)
    assert kept.share == 0.0 and kept.low is None and kept.high is None


def test_stats_doctests() -> None:
    import doctest

    from posttrain.evaluation import stats

    result = doctest.testmod(stats)
    assert result.attempted > 0 and result.failed == 0
