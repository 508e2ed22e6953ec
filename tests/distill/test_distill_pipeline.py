"""A recipe with distill stages on the tiny model: smaller student, trained, new lineage, retention reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from posttrain.distill.prune import mlp_neurons_to_keep
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.terminal import print_run_report

RECIPE = """\
name: tiny-distill
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
  prompts: {{kind: prompt, sources: [{{path: data/prompts.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4}}, train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, max_length: 64}}}}
  - name: distill
    type: distill
    data: chat
    student: {{init: prune, keep_layers: [0]}}
    loss: jsd
    beta: 0.5
    ce_weight: 0.5
    temperature: 2.0
    train: {{max_steps: 3, batch_size: 4, lr: 1.0e-2, logging_steps: 1, max_length: 64}}
  - name: seqkd
    type: distill
    after: base
    teacher: sft
    data: prompts
    sequence_kd: true
    max_new_tokens: 6
    student: {{init: prune, keep_fraction: 0.5, select: influence, mlp_keep_fraction: 0.5}}
    evaluate: false
    train: {{max_steps: 2, batch_size: 4, lr: 1.0e-2, max_length: 64}}
export: {{formats: [peft]}}
"""


@pytest.fixture
def recipe_path(tmp_path: Path, tiny_model_dir: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    with (data / "chat.jsonl").open("w") as f:
        for i in range(12):
            messages = [{"role": "user", "content": f"What is {i} + 7?"}, {"role": "assistant", "content": f"Answer: {i + 7}"}]
            f.write(json.dumps({"messages": messages}) + "\n")
    with (data / "prompts.jsonl").open("w") as f:
        for i in range(8):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"How many apples is {i} + 2?"}], "answer": str(i + 2)}) + "\n")
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def test_distill_stages_train_smaller_students_on_new_lineages(recipe_path: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    report = run_recipe(load_recipe(recipe_path), runs_dir=runs, console=Console(quiet=True))
    run_dir = runs / "tiny-distill"
    _, distill, seqkd = report.stages

    stage = json.loads((run_dir / "distill" / "stage.json").read_text())
    assert stage["status"] == "completed"
    metrics, facts = stage["metrics"], stage["facts"]["distill"]
    assert metrics["teacher"] == "sft" and metrics["kept_layers"] == [0]
    assert stage["compared_with"] == "sft"  # what the report compares the student with (its teacher's gain)
    assert facts["teacher_stage"] == "sft" and facts["teacher"] == "sft"
    assert facts["student_params"] < facts["teacher_params"]
    assert facts["teacher_tokens_per_s"] > 0 and facts["student_tokens_per_s"] > 0
    assert distill.facts["distill"].param_ratio < 1
    assert distill.lineage.base == str(run_dir / "distill" / "model") and distill.lineage.adapters == []
    assert distill.chain == ["distill"]

    # Training moved the student away from the pruned copy of the teacher it started as.
    init = load_file(str(run_dir / "distill" / "student_init" / "model.safetensors"))
    trained = load_file(str(run_dir / "distill" / "model" / "model.safetensors"))
    assert init.keys() == trained.keys()
    assert any(not torch.equal(init[k], trained[k]) for k in init)
    logs = [json.loads(line) for line in (run_dir / "distill" / "metrics.jsonl").read_text().splitlines()]
    assert any("kd" in r and "ce" in r for r in logs)

    # Retention = student / teacher score, on the leaderboard file and in the terminal report.
    board = (run_dir / "leaderboard.md").read_text()
    assert "retention" in board and "## distillation" in board
    console = Console(record=True, width=200)
    print_run_report(report, console=console)
    assert "distillation (retention" in console.export_text()

    # Sequence-level KD: the teacher (sft, not the stage's input) answered the prompts.
    answers = [json.loads(line) for line in (run_dir / "seqkd" / "teacher_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 8 and all(a["messages"][-1]["role"] == "assistant" for a in answers)
    seq = json.loads((run_dir / "seqkd" / "stage.json").read_text())
    # The tiny teacher has 2 layers: half is one, the first (first and last are kept before any by influence).
    assert seq["facts"]["distill"]["teacher_stage"] == "sft" and seq["metrics"]["kept_layers"] == [0]
    assert len(seq["metrics"]["layer_influence"]) == 2 and all(v > 0 for v in seq["metrics"]["layer_influence"])
    width, kept = seq["metrics"]["mlp_width"]  # and half of that layer's MLP neurons (width pruning)
    assert kept == mlp_neurons_to_keep(width, 0.5)
    assert json.loads((run_dir / "seqkd" / "model" / "config.json").read_text())["intermediate_size"] == kept
    assert seq["facts"]["distill"]["student_params"] < seq["facts"]["distill"]["teacher_params"]
    assert seqkd.lineage.adapters == [] and not seqkd.scores

    again = run_recipe(load_recipe(recipe_path), runs_dir=runs, console=Console(quiet=True))
    assert [s.cached for s in again.stages] == [True, True, True]
    assert again.stages[1].facts == report.stages[1].facts  # typed facts read back from stage.json
