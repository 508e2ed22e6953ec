"""Every stage type measures its objective on held-out data before and after it, through the pipeline.

A tiny random model learns fast on templated arithmetic, so the directions the
math promises show up within a few steps: SFT's held-out loss falls, DPO's
preference margin and accuracy rise, the distilled student's divergence from
its teacher falls. GRPO's greedy rewards carry no such promise in two steps:
only their shape and range are checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.terminal import print_run_report


def _write_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "chat.jsonl").open("w") as f:
        for i in range(40):
            messages = [
                {"role": "user", "content": f"What is {i} + 7? End your reply with \"Answer: <number>\"."},
                {"role": "assistant", "content": f"{i} + 7 = {i + 7}.\nAnswer: {i + 7}"},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with (folder / "prefs.jsonl").open("w") as f:
        for i in range(40):
            prompt = [{"role": "user", "content": f"What is {i} + 3?"}]
            f.write(json.dumps({"prompt": prompt, "chosen": f"Answer: {i + 3}", "rejected": "apples apples"}) + "\n")
    with (folder / "prompts.jsonl").open("w") as f:
        for i in range(16):
            prompt = [{"role": "user", "content": f"What is {i} + 2? End your reply with \"Answer: <number>\"."}]
            f.write(json.dumps({"prompt": prompt, "answer": str(i + 2)}) + "\n")


# float32: the tiny random model's distributions are near uniform, so the effects measured here (a DPO
# margin of a few hundredths of a nat) are below bf16's rounding, which `dtype: auto` would pick on a CPU
# with bf16 units. The embedded model's objectives in bf16 are checked by the quickstart.
RECIPE = """\
name: tiny-objectives
seed: 5
model: {{base: {model}, dtype: float32}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}], eval_split: 0.2}}
  prefs: {{kind: preference, sources: [{{path: data/prefs.jsonl}}], eval_split: 0.2}}
  prompts: {{kind: prompt, sources: [{{path: data/prompts.jsonl}}], eval_split: 0.25}}
  no_split: {{kind: preference, sources: [{{path: data/prefs.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2, on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 8}},
     train: {{max_steps: 8, batch_size: 8, lr: 2.0e-2, max_length: 64}}}}
  - {{name: distill, type: distill, data: chat, evaluate: false, student: {{init: prune, keep_layers: [0]}},
     train: {{max_steps: 8, batch_size: 8, lr: 1.0e-2, max_length: 64}}}}
  - {{name: dpo, type: dpo, data: prefs, evaluate: false, beta: 0.5, lora: {{r: 8}},
     train: {{max_steps: 6, batch_size: 8, lr: 2.0e-2, max_length: 64}}}}
  - {{name: grpo, type: grpo, data: prompts, evaluate: false, num_generations: 2, max_completion_length: 8,
     rewards: [{{fn: rewards.math:exact_number}}, {{fn: rewards.format:answer_line, weight: 0.5}}],
     lora: {{r: 4}}, train: {{max_steps: 1, batch_size: 4, lr: 1.0e-2}}}}
  - {{name: dpo_unsplit, type: dpo, data: no_split, after: sft, evaluate: false, lora: {{r: 2}},
     train: {{max_steps: 1, batch_size: 4, max_length: 64}}}}
export: {{formats: [peft]}}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("objectives")
    _write_data(root / "data")
    path = root / "tiny.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    report = run_recipe(load_recipe(path), runs_dir=root / "runs", console=Console(quiet=True))
    return path, root / "runs", report


def _objective(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "objective.json").read_text())["objective"]


def test_sft_held_out_loss_falls(tiny_run) -> None:
    _, runs, _ = tiny_run
    objective = _objective(runs / "tiny-objectives", "sft")
    assert objective["rows"] == 8  # 20% of 40 conversations
    assert objective["lower_is_better"] == ["loss"]
    assert objective["after"]["loss"] < objective["before"]["loss"] - 0.1


def test_dpo_margin_and_accuracy_rise_from_the_reference(tiny_run) -> None:
    _, runs, _ = tiny_run
    objective = _objective(runs / "tiny-objectives", "dpo")
    before, after = objective["before"], objective["after"]
    assert before["reward_margin"] == 0 and before["reward_accuracy"] == 0  # the reference against itself
    assert after["reward_margin"] > 0
    assert after["reward_accuracy"] > 0.5
    assert after["logp_margin"] > before["logp_margin"]
    assert after["logp_accuracy"] >= before["logp_accuracy"]


def test_distilled_student_moves_toward_its_teacher(tiny_run) -> None:
    _, runs, _ = tiny_run
    objective = _objective(runs / "tiny-objectives", "distill")
    assert objective["before_is"] == "student before training"
    assert objective["after"]["forward_kl"] < objective["before"]["forward_kl"]
    assert objective["before"]["teacher_loss"] == objective["after"]["teacher_loss"]


def test_grpo_reports_each_reward_on_greedy_replies(tiny_run) -> None:
    _, runs, _ = tiny_run
    objective = _objective(runs / "tiny-objectives", "grpo")
    assert objective["rows"] == 4
    for side in ("before", "after"):
        assert set(objective[side]) == {"reward/exact_number", "reward/answer_line", "reward"}
        assert all(0.0 <= v <= 1.5 for v in objective[side].values())


def test_a_dataset_without_held_out_split_measures_nothing(tiny_run) -> None:
    _, runs, report = tiny_run
    saved = json.loads((runs / "tiny-objectives" / "dpo_unsplit" / "objective.json").read_text())
    assert saved["objective"] is None
    assert "dpo_unsplit" not in dict(report.objectives())


def test_objectives_are_shown_and_cached_on_rerun(tiny_run) -> None:
    path, runs, report = tiny_run
    run_dir = runs / "tiny-objectives"
    board = (run_dir / "leaderboard.md").read_text()
    assert "## stage objectives on held-out data" in board
    assert "| sft | 8 rows | loss |" in board
    console = Console(record=True, width=160)
    print_run_report(report, console=console)
    assert "reward_margin" in console.export_text()

    saved = {s: (run_dir / s / "objective.json").read_text() for s in ("sft", "distill", "dpo", "grpo")}
    stamps = {s: (run_dir / s / "objective.json").stat().st_mtime_ns for s in saved}
    again = run_recipe(load_recipe(path), runs_dir=runs, console=Console(quiet=True))
    assert all(s.cached for s in again.stages)
    for stage, text in saved.items():
        assert (run_dir / stage / "objective.json").stat().st_mtime_ns == stamps[stage], f"{stage} recomputed"
        assert (run_dir / stage / "objective.json").read_text() == text
    assert dict(again.objectives())["sft"] == dict(report.objectives())["sft"]


@pytest.mark.parametrize("name", ["quickstart", "dpo", "grpo", "distill"])
def test_shipped_recipes_hold_out_data_for_every_stage_objective(name: str) -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.yaml").recipe
    for stage in recipe.stages:
        assert recipe.datasets[stage.data].eval_split > 0, f"{name}: stage {stage.name} has no held-out data"


ON_POLICY_RECIPE = """\
name: tiny-on-policy
seed: 2
model: {{base: {model}, dtype: float32}}
datasets:
  prompts: {{kind: prompt, sources: [{{path: data/prompts.jsonl}}], eval_split: 0.5}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2, on_base: false}}
stages:
  - {{name: dpo, type: dpo, data: prompts, evaluate: false, lora: {{r: 2}},
     on_policy: {{samples: 3, max_new_tokens: 8, rewards: [{{fn: my_rewards.py:longer}}]}},
     train: {{max_steps: 1, batch_size: 2, max_length: 64}}}}
export: {{formats: [peft]}}
"""

LONGER = """\
from rewards import completion_text


def longer(completions, **kwargs):
    return [min(len(completion_text(c)), 40) / 40 for c in completions]
"""


def test_on_policy_dpo_samples_held_out_pairs_from_its_input(tmp_path: Path, tiny_model_dir: Path) -> None:
    _write_data(tmp_path / "data")
    (tmp_path / "my_rewards.py").write_text(LONGER)
    path = tmp_path / "tiny.yaml"
    path.write_text(ON_POLICY_RECIPE.format(model=tiny_model_dir))
    run_recipe(load_recipe(path), runs_dir=tmp_path / "runs", console=Console(quiet=True))
    stage_dir = tmp_path / "runs" / "tiny-on-policy" / "dpo"
    held_out = [json.loads(line) for line in (stage_dir / "heldout_pairs.jsonl").read_text().splitlines()]
    trained_on = [json.loads(line) for line in (stage_dir / "pairs.jsonl").read_text().splitlines()]
    assert held_out, "8 held-out prompts × 3 random samples of different lengths give pairs"
    assert not {json.dumps(p["prompt"]) for p in held_out} & {json.dumps(p["prompt"]) for p in trained_on}
    assert all(p["chosen_score"] > p["rejected_score"] for p in held_out)
    objective = _objective(tmp_path / "runs" / "tiny-on-policy", "dpo")
    assert objective["rows"] == len(held_out)
    assert objective["before"]["reward_margin"] == 0
