"""Retention (student score / teacher score) on the leaderboard, and the distillation summary."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from posttrain.evaluation.leaderboard import StageScores, compute_cells, markdown_table
from posttrain.pipeline.leaderboard import distill_summary, stage_rows

ROWS = [
    StageScores("base", {"pt_arith": 0.20, "pt_arith_mc": 0.50}),
    StageScores("sft", {"pt_arith": 0.40, "pt_arith_mc": 0.60}),
    StageScores("distill", {"pt_arith": 0.30, "pt_arith_mc": 0.45}, {"input": "sft", "teacher": "sft"}),
    StageScores("outside", {"pt_arith": 0.10}, {"input": "base", "teacher_scores": {"pt_arith": 0.40}}),
]


def test_retention_is_student_over_teacher_per_task() -> None:
    cells = compute_cells(ROWS)
    assert cells[1]["pt_arith"].retention is None  # not distilled
    assert cells[2]["pt_arith"].retention == pytest.approx(0.75)
    assert cells[2]["pt_arith_mc"].retention == pytest.approx(0.75)
    assert cells[3]["pt_arith"].retention == pytest.approx(0.25)  # teacher scored inside the stage
    assert cells[3]["pt_arith_mc"].retention is None
    assert "0.300<br>+0.100 vs base<br>-0.100 vs input<br>retention 0.75" in markdown_table(ROWS)


def test_distill_summary_reads_the_stage_metrics() -> None:
    metrics = {
        "teacher": "sft", "teacher_stage": "sft", "teacher_params": 134_515_008, "student_params": 81_419_328,
        "param_ratio": 0.6053, "teacher_tokens_per_s": 100.0, "student_tokens_per_s": 180.0, "speedup": 1.8,
    }
    stage = lambda name, scores, m: SimpleNamespace(name=name, scores=scores, input="sft", metrics=m)  # noqa: E731
    report = SimpleNamespace(
        run_dir=Path("."), base=SimpleNamespace(scores={"pt_arith": 0.2}),
        stages=[stage("sft", {"pt_arith": 0.4}, {}), stage("distill", {"pt_arith": 0.3}, metrics)],
    )
    assert stage_rows(report)[2].extra == {"input": "sft", "teacher": "sft"}
    assert distill_summary(report) == [
        ("distill", "sft", "134.5M → 81.4M (×0.61)", "100 → 180 (×1.80)", "0.75"),
    ]
