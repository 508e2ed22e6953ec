"""Every evaluation records its protocol; scores taken under different protocols are not compared."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from posttrain.evaluation.record import EvalEvidence, protocol_difference
from posttrain.evaluation.stats import task_stats
from posttrain.leaderboard.render import board_cell, board_json, markdown_table, significance_verdicts
from posttrain.leaderboard.store import record_run, top
from posttrain.leaderboard.table import StageScores, compute_cells
from posttrain.report.board import board_csv

PROTOCOL = {"task_hash": "4b4b7bb49c48dd94", "num_fewshot": 0, "limit": 100, "apply_chat_template": True,
            "chat_template_hash": "fcf7a096fe99a48f", "generation_kwargs": {"max_gen_toks": 64}, "filters": [],
            "metric": "exact_match", "lm_eval_version": "0.4.13", "seed": 42}


def _evidence(values: list[float], **protocol_changes) -> EvalEvidence:
    stats = task_stats("exact_match", sum(values) / len(values), values, reported_stderr=None, n=len(values),
                       chance=0.0)
    per_doc = {f"pt_arith:{i}": v for i, v in enumerate(values)}
    return EvalEvidence(stats={"pt_arith": stats}, per_doc={"pt_arith": per_doc},
                        protocol={"pt_arith": {**PROTOCOL, **protocol_changes}})


def _rows(**stage_protocol) -> list[StageScores]:
    base = [0.0] * 20
    stage = [1.0] * 12 + [0.0] * 8
    return [StageScores("base", {"pt_arith": 0.0}, evidence=_evidence(base)),
            StageScores("sft", {"pt_arith": 0.6}, evidence=_evidence(stage, **stage_protocol))]


def test_same_protocol_is_compared() -> None:
    cell = compute_cells(_rows())[1]["pt_arith"]
    assert cell.vs_base == pytest.approx(0.6) and cell.test_base is not None and cell.test_base.significant
    assert cell.not_compared == {}


@pytest.mark.parametrize(("change", "said"), [
    ({"limit": 50}, "documents (limit) 50 vs 100"),
    ({"num_fewshot": 5}, "shots 5 vs 0"),
    ({"apply_chat_template": False, "chat_template_hash": None}, "chat template on/off False vs True"),
    ({"generation_kwargs": {"max_gen_toks": 256}}, "generation settings"),
    ({"lm_eval_version": "0.4.9"}, "lm-eval version 0.4.9 vs 0.4.13"),
    ({"task_hash": "0000000000000000"}, "task definition"),
])
def test_rows_with_different_protocols_are_not_compared(change: dict, said: str) -> None:
    rows = _rows(**change)
    cell = compute_cells(rows)[1]["pt_arith"]
    assert cell.vs_base is None and cell.test_base is None
    assert said in cell.not_compared["base"]
    assert "not compared with base (other protocol)" in markdown_table(rows)
    (line,) = significance_verdicts(rows)
    assert line.startswith("sft: pt_arith not compared with base: protocols differ: ") and said in line


def test_an_evaluation_recorded_before_protocols_is_not_refused() -> None:
    old = EvalEvidence(stats={}, per_doc={})
    assert protocol_difference(_evidence([1.0]), old, "pt_arith") is None


def test_the_harness_records_the_same_protocol_twice_and_a_changed_limit(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.evaluation.harness import evaluate_model

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    run = [evaluate_model(model, tokenizer, tasks=["pt_arith"], limit=limit, gen_kwargs={"max_gen_toks": 4})
           for limit in (2, 2, 3)]
    first, again, other = (r["protocol"]["pt_arith"] for r in run)
    assert first == again
    assert {k for k in first if first[k] != other[k]} == {"limit"}
    assert first["apply_chat_template"] is True and first["chat_template_hash"] and first["task_hash"]


def _record_run(db: Path, run: str, timestamp: str, **stage_protocol) -> None:
    rows = _rows(**stage_protocol)
    record_run(db, run, "tiny", rows, {"base": f"{run}-b", "sft": f"{run}-s"}, timestamp)


def test_the_cross_run_board_does_not_rank_rows_of_another_protocol_together(tmp_path: Path) -> None:
    db = tmp_path / "leaderboard.sqlite"
    _record_run(db, "full", "2026-12-01")
    _record_run(db, "quick", "2026-12-02", limit=20)  # its sft row: 20 documents, not 100
    rows = top(db, task="pt_arith")
    order = [(r.run_name, r.stage) for r in rows]
    # quick/sft scored 0.6 like full/sft, but under another protocol: after every comparable row, with the reason.
    assert order[-1] == ("quick", "sft")
    assert rows[-1].not_compared == {"pt_arith": "protocols differ: documents (limit) 20 vs 100"}
    assert all(r.not_compared == {} for r in rows[:-1])
    assert rows[-1].protocol("pt_arith")["limit"] == 20
    assert "not ranked with the others: protocols differ: documents (limit) 20 vs 100" in board_cell(rows[-1], "pt_arith")
    entry = board_json(rows)["entries"][-1]["tasks"]["pt_arith"]
    assert entry["not_compared"].startswith("protocols differ") and entry["protocol"]["limit"] == 20
    csv_lines = board_csv(rows).splitlines()
    assert csv_lines[0].endswith(",not_compared") and csv_lines[-1].endswith("documents (limit) 20 vs 100")


def test_a_board_recorded_before_protocols_were_kept_still_ranks(tmp_path: Path) -> None:
    db = tmp_path / "leaderboard.sqlite"
    conn = sqlite3.connect(db)  # the results table as boards before protocols had it
    conn.execute("CREATE TABLE results (run_name TEXT NOT NULL, stage TEXT NOT NULL, fingerprint TEXT NOT NULL, "
                 "model_ref TEXT NOT NULL, task TEXT NOT NULL, score REAL NOT NULL, timestamp TEXT NOT NULL, "
                 "PRIMARY KEY (run_name, stage, fingerprint, task))")
    conn.execute("INSERT INTO results VALUES ('old', 'sft', 'x', 'tiny', 'pt_arith', 0.9, '2026-01-01')")
    conn.commit()
    conn.close()
    _record_run(db, "new", "2026-12-02")
    rows = top(db, task="pt_arith")
    assert (rows[0].run_name, rows[0].stage) == ("old", "sft")
    assert all(r.not_compared == {} for r in rows)
