"""'Why, when not': a stage that did not move its benchmark is told apart by its objective and logs, each case
pointing at a different knob; a stage that improved significantly gets no diagnosis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.report import write_report
from posttrain.report.collect import read_run
from posttrain.report.diagnosis import ObjectiveChange, TrainingFacts, diagnoses, knobs_for


def _facts(quarters, *, steps=40, rows=1000, seen=320, signal="loss", lr=1e-3) -> TrainingFacts:
    return TrainingFacts(steps, lr, signal, quarters, seen, rows)


def _objective(verdict: str) -> ObjectiveChange:
    return ObjectiveChange("loss", 2.0, 1.5 if verdict == "better" else 2.0, 0.1, verdict)


def test_a_loss_still_falling_asks_for_more_steps() -> None:
    knobs = knobs_for(_objective("within noise"), _facts((3.0, 2.5, 2.0, 1.6)), "pt_arith")
    assert knobs == ["Its loss was still improving over the last quarter of training (2.000 → 1.600): more steps "
                     "(train.max_steps 40 → 80)."]


def test_a_flat_loss_asks_for_a_higher_learning_rate() -> None:
    knobs = knobs_for(None, _facts((2.0, 2.01, 1.99, 1.98), seen=2000), "pt_arith")
    assert len(knobs) == 1 and "barely moved (2.000 → 1.980) at peak learning rate 0.001" in knobs[0]
    assert "a higher train.lr (e.g. 0.003)" in knobs[0]


def test_a_worse_objective_after_many_passes_reads_as_overfitting() -> None:
    knobs = knobs_for(_objective("worse"), _facts((2.0, 1.0, 0.5, 0.2), rows=50, seen=320), "pt_arith")
    assert knobs == ["It went over its 50 rows 6.4 times and got worse on held-out rows (overfitting): fewer "
                     "steps, or more rows."]
    knobs = knobs_for(_objective("worse"), _facts((2.0, 1.0, 0.5, 0.2), rows=5000), "pt_arith")
    assert knobs == ["Its held-out objective got worse at peak learning rate 0.001: a lower train.lr (e.g. 0.00033)."]


def test_a_learned_objective_that_did_not_transfer_points_at_the_data() -> None:
    knobs = knobs_for(_objective("better"), _facts((2.0, 1.8, 1.79, 1.79), rows=5000), "pt_arith")
    assert knobs[0].startswith("It learned its own objective, but that did not carry over to pt_arith")
    assert knobs[1] == "It saw 6% of its 5000 rows once: train.max_steps 40 → 80."


def test_a_rising_reward_is_progress_for_rl_stages() -> None:
    knobs = knobs_for(None, _facts((0.1, 0.2, 0.3, 0.5), signal="reward"), "pt_arith")
    assert knobs[0].startswith("Its reward was still improving over the last quarter of training (0.300 → 0.500)")
    falling_reward = _facts((0.5, 0.4, 0.3, 0.2), signal="reward", seen=2000)  # no knob its log points at
    assert knobs_for(None, falling_reward, "pt_arith") == []


def test_still_improving_on_repeated_rows_asks_for_rows_not_steps() -> None:
    knobs = knobs_for(None, _facts((2.0, 1.0, 0.5, 0.2), rows=10, seen=320), "pt_arith")
    assert knobs == ["Its loss was still improving (0.500 → 0.200 over the last quarter), but on rows it had seen "
                     "32.0 times: more rows rather than more steps."]


def test_the_report_explains_each_stage_that_did_not_move(fake_run: Path) -> None:
    dpo = json.loads((fake_run / "dpo" / "stage.json").read_text())
    dpo["spec"]["train"] = {"batch_size": 4, "grad_accum": 2, "lr": 5e-4}
    (fake_run / "dpo" / "stage.json").write_text(json.dumps(dpo))
    (fake_run / "data" / "chat" / "report.json").write_text(json.dumps({"name": "chat", "train_rows": 64}))

    found = {d.stage: d for d in diagnoses(read_run(fake_run))}
    # base 0/12 → sft 6/12 is significant (McNemar p = 0.03); each later step of +1 or +4 is not.
    assert set(found) == {"distill", "dpo", "grpo"}
    dpo_why = found["dpo"]
    assert dpo_why.outcome == "did not move" and dpo_why.delta == pytest.approx(1 / 12)
    assert dpo_why.objective.metric == "reward_margin" and dpo_why.objective.verdict == "better"
    assert dpo_why.training.steps == 4 and dpo_why.training.epochs == 4 * 8 / 64
    assert dpo_why.training.quarters == (2.0, 1.0, 2 / 3, 0.5)

    write_report(fake_run)
    page = (fake_run / "report.html").read_text()
    why = page.split("<ul class='why-not'>")[1].split("</ul>")[0]
    assert why.count("<li>") == 3
    assert "dpo did not move pt_arith (+0.083 vs its input, p = 1)" in why
    assert "Its held-out reward_margin went 0.0000 → 0.3000 (better" in why
    assert "It trained 4 steps, 0.50 passes over 64 rows, peak learning rate 0.004" in why
    assert "### Stages that did not move their benchmark, and why" in (fake_run / "report.md").read_text()
