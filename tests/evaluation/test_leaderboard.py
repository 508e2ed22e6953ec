"""Leaderboard deltas, rendering and the SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from posttrain.leaderboard.render import markdown_table, rich_table
from posttrain.leaderboard.store import record, top
from posttrain.leaderboard.table import StageScores, compute_cells
from posttrain.stagekit.facts import DistillFacts


def distilled(teacher_stage: str | None = None, teacher_scores: dict[str, float] | None = None) -> DistillFacts:
    return DistillFacts(
        teacher=teacher_stage or "outside/model", teacher_params=100, student_params=50, teacher_tokens_per_s=10.0,
        student_tokens_per_s=20.0, teacher_stage=teacher_stage, teacher_scores=teacher_scores,
    )

ROWS = [
    StageScores("base", {"pt_arith": 0.10, "pt_ifeval": 0.50}),
    StageScores("sft", {"pt_arith": 0.40, "pt_ifeval": 0.55}),
    StageScores("dpo", {"pt_arith": 0.35, "pt_ifeval": 0.70}),
    StageScores("grpo", {"pt_arith": 0.60}, input="sft"),
]


def test_deltas_against_base_and_input() -> None:
    cells = compute_cells(ROWS)
    assert cells[0]["pt_arith"].vs_base is None
    assert cells[1]["pt_arith"].vs_base == pytest.approx(0.30)
    assert cells[1]["pt_arith"].vs_input is None  # its input is the base: same as vs_base
    assert cells[2]["pt_arith"].vs_base == pytest.approx(0.25)
    assert cells[2]["pt_arith"].vs_input == pytest.approx(-0.05)
    assert cells[3]["pt_arith"].vs_input == pytest.approx(0.20)  # explicit input: sft, not dpo
    assert cells[3]["pt_ifeval"].score is None and cells[3]["pt_ifeval"].vs_base is None


def test_tables_render() -> None:
    md = markdown_table(ROWS)
    assert md.splitlines()[0] == "| stage | pt_arith | pt_ifeval |"
    assert "0.400<br>+0.300 vs base" in md and "-0.050 vs input" in md
    console = Console(record=True, width=120)
    console.print(rich_table(ROWS))
    text = console.export_text()
    assert "grpo" in text and "+0.500 vs base" in text


def test_sqlite_upsert_and_top(tmp_path: Path) -> None:
    db = tmp_path / "board.sqlite"
    assert top(db) == []
    record(db, "run1", "sft", "runs/run1/sft", {"pt_arith": 0.2, "pt_ifeval": 0.5}, "fp1", "2025-01-01T00:00:00")
    record(db, "run1", "sft", "runs/run1/sft", {"pt_arith": 0.3, "pt_ifeval": 0.5}, "fp1", "2025-01-01T00:05:00")
    record(db, "run1", "sft", "runs/run1/sft", {"pt_arith": 0.1}, "fp2", "2025-01-02T00:00:00")
    record(db, "run2", "dpo", "runs/run2/dpo", {"pt_arith": 0.6, "pt_ifeval": 0.1}, "fp3", "2025-01-03T00:00:00")
    rows = top(db)
    assert [(r.run_name, r.fingerprint) for r in rows] == [("run1", "fp1"), ("run2", "fp3"), ("run1", "fp2")]
    assert rows[0].scores == {"pt_arith": 0.3, "pt_ifeval": 0.5}  # replaced, not duplicated
    assert [r.fingerprint for r in top(db, task="pt_arith")] == ["fp3", "fp1", "fp2"]
    assert [r.fingerprint for r in top(db, task="pt_ifeval", limit=1)] == ["fp1"]


def test_student_retention_against_teacher_row_or_outside_scores() -> None:
    rows = [
        StageScores("base", {"pt_arith": 0.2}),
        StageScores("sft", {"pt_arith": 0.5}),
        StageScores("distill", {"pt_arith": 0.4}, input="base", distill=distilled("sft")),
        StageScores("distill2", {"pt_arith": 0.3}, distill=distilled(teacher_scores={"pt_arith": 0.6})),
        StageScores("zero", {"pt_arith": 0.3}, distill=distilled(teacher_scores={"pt_arith": 0.0})),
    ]
    cells = compute_cells(rows)
    assert cells[1]["pt_arith"].retention is None
    assert cells[2]["pt_arith"].retention == pytest.approx(0.8)
    assert cells[2]["pt_arith"].vs_input is None  # its input is the base
    assert cells[3]["pt_arith"].retention == pytest.approx(0.5)
    assert cells[4]["pt_arith"].retention is None  # no ratio against a zero score
    assert "retention 0.80" in markdown_table(rows)
