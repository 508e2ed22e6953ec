"""Retention (student score / teacher score) on the leaderboard, and the distillation summary."""

from __future__ import annotations

import pytest

from posttrain.leaderboard.render import distill_markdown, distill_rows, markdown_table
from posttrain.leaderboard.table import StageScores, compute_cells
from posttrain.stagekit.facts import DistillFacts, facts_from_json, facts_to_json

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
    StageScores("distill", {"pt_arith": 0.30, "pt_arith_mc": 0.45}, input="sft", distill=FROM_SFT),
    StageScores("outside", {"pt_arith": 0.10}, input="base", distill=OUTSIDE),
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
    assert distill_rows(ROWS) == [
        ("distill", "sft", "134.5M → 81.4M (×0.61)", "100 → 180 (×1.80)", "0.75"),
        ("outside", "org/big", "0.0M → 0.0M (×0.50)", "50 → 75 (×1.50)", "0.25"),
    ]
    assert distill_markdown(ROWS).startswith("## distillation")
    assert distill_markdown(ROWS[:2]) == ""


def test_facts_survive_stage_json() -> None:
    facts = {"distill": FROM_SFT}
    assert facts_from_json(facts_to_json(facts)) == facts
