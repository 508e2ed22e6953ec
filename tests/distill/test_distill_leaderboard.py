"""Retention (student score / teacher score) on the leaderboard, and the distillation summary."""

from __future__ import annotations

import pytest

from posttrain.distill.facts import DistillFacts
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
