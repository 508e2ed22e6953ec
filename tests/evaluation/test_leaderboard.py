"""Leaderboard deltas, rendering and the SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.distill.facts import DistillFacts
from posttrain.evaluation.record import EvalEvidence
from posttrain.evaluation.stats import task_stats, wilson_interval
from posttrain.leaderboard.render import (
    LEGEND,
    board_json,
    board_markdown,
    markdown_table,
    rich_table,
    run_markdown,
    significance_verdicts,
)
from posttrain.leaderboard.store import record, record_run, top
from posttrain.leaderboard.table import StageScores, compute_cells


def as_facts(teacher_stage: str | None = None, teacher_scores: dict[str, float] | None = None) -> dict:
    return {DistillFacts.kind: distilled(teacher_stage, teacher_scores)}


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
        StageScores("distill", {"pt_arith": 0.4}, input="base", facts=as_facts("sft")),
        StageScores("distill2", {"pt_arith": 0.3}, facts=as_facts(teacher_scores={"pt_arith": 0.6})),
        StageScores("zero", {"pt_arith": 0.3}, facts=as_facts(teacher_scores={"pt_arith": 0.0})),
    ]
    cells = compute_cells(rows)
    assert cells[1]["pt_arith"].retention is None
    assert cells[2]["pt_arith"].retention == pytest.approx(0.8)
    assert cells[2]["pt_arith"].vs_input is None  # its input is the base
    assert cells[3]["pt_arith"].retention == pytest.approx(0.5)
    assert cells[4]["pt_arith"].retention is None  # no ratio against a zero score
    assert "retention 0.80" in markdown_table(rows)


# --- uncertainty: stats, paired tests on per-document results, the JSON board, an old board migrated ---

def _evidence(task: str, values: list[float], chance: float = 0.0, per_doc: bool = True) -> EvalEvidence:
    score = sum(values) / len(values)
    stats = task_stats("acc", score, values if per_doc else None, reported_stderr=None, n=len(values), chance=chance,
                       note=None if per_doc else "acc is computed over the whole corpus")
    docs = {f"{task}:{i}": v for i, v in enumerate(values)} if per_doc else None
    return EvalEvidence(stats={task: stats}, per_doc={task: docs})


def _row(label: str, values: list[float], **kwargs) -> StageScores:
    chance = kwargs.pop("chance", 0.0)
    per_doc = kwargs.pop("per_doc", True)
    return StageScores(label, {"t": sum(values) / len(values)}, evidence=_evidence("t", values, chance, per_doc),
                       **kwargs)


BASE_DOCS = [0.0] * 16 + [1.0] * 4  # 0.20
SFT_DOCS = [1.0] * 8 + [0.0] * 8 + [1.0] * 4  # gains 8 documents, loses none: 0.60
DPO_DOCS = [1.0] * 7 + [0.0] * 9 + [1.0] * 3 + [0.0]  # vs sft: loses 2, within noise: 0.50


def test_deltas_carry_paired_tests_and_markdown_marks_them() -> None:
    rows = [_row("base", BASE_DOCS), _row("sft", SFT_DOCS), _row("dpo", DPO_DOCS)]
    cells = compute_cells(rows)
    sft, dpo = cells[1]["t"], cells[2]["t"]
    assert sft.test_base.test == "mcnemar-exact" and sft.test_base.p_value == pytest.approx(2 / 2**8)
    assert sft.test_base.significant and sft.stats.stderr == pytest.approx(0.1124, abs=1e-4)
    assert dpo.test_input.p_value == pytest.approx(0.5) and not dpo.test_input.significant
    md = markdown_table(rows)
    assert "0.600 ±0.112<br>+0.400* vs base" in md
    # dpo vs base: 7 documents gained, 1 lost -> McNemar p = 2 * 9/256 = 0.07: within noise, so no mark.
    assert dpo.test_base.p_value == pytest.approx(2 * 9 / 256)
    assert "+0.300 vs base<br>-0.100 vs input" in md
    assert LEGEND in md and "significant at 95%" in md


def test_each_stage_gets_a_plain_verdict_of_what_is_significant() -> None:
    rows = [_row("base", BASE_DOCS), _row("sft", SFT_DOCS), _row("dpo", DPO_DOCS)]
    sft, dpo = significance_verdicts(rows)
    assert sft == "sft: significant at 95%: t +0.400 (mcnemar-exact, p=0.00781) vs base"
    # dpo is +0.300 vs base (p = 0.07) and -0.100 vs sft (p = 0.5): neither is more than noise, and it says so.
    assert dpo.startswith("dpo: no benchmark change is significant at 95%") and "20 documents" in dpo
    assert f"- {dpo}" in run_markdown("run", rows)


def test_a_corpus_level_metric_says_which_significance_is_unavailable() -> None:
    rows = [_row("base", BASE_DOCS), _row("sft", SFT_DOCS, per_doc=False)]
    test = compute_cells(rows)[1]["t"].test_base
    assert test.p_value is None and test.test is None
    assert "no paired significance" in test.note and "whole corpus" in test.note
    assert "+0.400† vs base" in markdown_table(rows)


def test_json_board_has_stderr_intervals_and_each_delta_test(tmp_path: Path) -> None:
    db = tmp_path / "board.sqlite"
    rows = [_row("base", BASE_DOCS, chance=0.25), _row("sft", SFT_DOCS, chance=0.25)]
    record_run(db, "run1", "model/x", rows, {"base": "fp0", "sft": "fp1"}, "2025-01-01T00:00:00")
    board = board_json(top(db))
    assert "chance-normalized" in board["ranking"]
    first, second = board["entries"]
    assert (first["stage"], second["stage"]) == ("sft", "base")
    task = first["tasks"]["t"]
    assert task["stderr"] == pytest.approx(0.1124, abs=1e-4) and task["n"] == 20 and task["chance"] == 0.25
    assert task["ci95"] == pytest.approx(list(wilson_interval(0.6, 20)))
    assert task["normalized"] == pytest.approx((0.6 - 0.25) / 0.75)
    (delta,) = task["deltas"]
    assert delta["vs"] == "base" and delta["other"] == "base" and delta["test"] == "mcnemar-exact"
    assert delta["p_value"] == pytest.approx(2 / 2**8) and delta["significant"] is True
    assert second["tasks"]["t"]["normalized"] == 0.0  # 0.20 on 4-way choice is below chance
    json.dumps(board)


def test_an_old_board_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "board.sqlite"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE results (run_name TEXT NOT NULL, stage TEXT NOT NULL, fingerprint TEXT NOT NULL, "
        "model_ref TEXT NOT NULL, task TEXT NOT NULL, score REAL NOT NULL, timestamp TEXT NOT NULL, "
        "PRIMARY KEY (run_name, stage, fingerprint, task))"
    )
    conn.execute("INSERT INTO results VALUES ('old', 'sft', 'fp', 'm', 't', 0.5, '2024-01-01T00:00:00')")
    conn.commit()
    conn.close()
    record_run(db, "new", "m", [_row("base", BASE_DOCS)], {"base": "fp2"}, "2025-01-01T00:00:00")
    rows = top(db)
    assert [(r.run_name, r.mean) for r in rows] == [("old", 0.5), ("new", pytest.approx(0.2))]
    assert rows[0].stats["t"]["stderr"] is None and rows[1].stats["t"]["n"] == 20


def test_leaderboard_command_formats(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    record_run(runs / "leaderboard.sqlite", "run1", "m", [_row("base", BASE_DOCS), _row("sft", SFT_DOCS)],
               {"base": "fp0", "sft": "fp1"}, "2025-01-01T00:00:00")
    run = lambda fmt: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "posttrain.cli", "leaderboard", "--runs-dir", str(runs), "--format", fmt],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    as_json = json.loads(run("json").stdout)
    assert as_json["entries"][0]["tasks"]["t"]["deltas"][0]["test"] == "mcnemar-exact"
    md = board_markdown(top(runs / "leaderboard.sqlite"), "board")
    assert "| 1 | run1 | sft | 0.600 ±0.112 | 0.600 |" in md and "chance-normalized" in md
    bad = run("xml")
    assert bad.returncode == 2 and "choose table, md, json, csv or html" in bad.stderr
