"""`on_policy` for the reference-free pairwise stages: pairs sampled from the input model, ranked by reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.errors import RecipeError, UserError
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe

# Random text still differs in length, so `longer` separates samples; `flat` never does.
REWARD_FILE = """\
from rewards import completion_text


def longer(completions, **kwargs):
    return [min(len(completion_text(c)), 40) / 40 for c in completions]


def flat(completions, **kwargs):
    return [1.0 for _ in completions]
"""

RECIPE = """\
name: onp
seed: 3
model: {{base: {model}}}
datasets:
  prompts: {{kind: {kind}, sources: [{{path: prompts.jsonl}}], eval_split: {eval_split}}}
eval: {{on_base: false}}
stages:
  - name: pairs
    type: {type}
    data: prompts
    evaluate: false
    on_policy: {{samples: 3, max_new_tokens: 8, rewards: [{{fn: my_rewards.py:{reward}}}]}}
    lora: {{r: 2}}
    train: {{max_steps: 2, batch_size: 2, lr: 1.0e-3, logging_steps: 1, max_length: 64}}
export: {{formats: [peft]}}
"""


def _write(
    folder: Path, model: Path, *, stage_type: str, reward: str = "longer", kind: str = "prompt", prompts: int = 5,
    eval_split: float = 0.0,
) -> Path:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "answer": str(i + 5)} for i in range(prompts)]
    (folder / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "my_rewards.py").write_text(REWARD_FILE)
    path = folder / "onp.yaml"
    path.write_text(RECIPE.format(model=model, kind=kind, type=stage_type, reward=reward, eval_split=eval_split))
    return path


@pytest.mark.parametrize("stage_type", ["orpo", "simpo"])
def test_on_policy_pairs_are_sampled_ranked_and_trained_on(tmp_path: Path, tiny_model_dir: Path, stage_type: str) -> None:
    report = run_recipe(
        load_recipe(_write(tmp_path, tiny_model_dir, stage_type=stage_type)), runs_dir=tmp_path / "runs",
        console=Console(quiet=True),
    )
    stage_dir = tmp_path / "runs" / "onp" / "pairs"
    pairs = [json.loads(line) for line in (stage_dir / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    metrics = report.stages[0].metrics
    assert metrics["pairs_prompts"] == 5 and metrics["pairs_pairs"] == len(pairs)
    assert any("loss" in json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("stage_type", ["orpo", "simpo"])
def test_on_policy_reference_free_stages_measure_held_out_pairs_sampled_from_their_input(
    tmp_path: Path, tiny_model_dir: Path, stage_type: str
) -> None:
    # Like on-policy DPO: the held-out prompts are paired from the input model's own samples, ranked by
    # the same reward, and measured before and after the stage.
    path = _write(tmp_path, tiny_model_dir, stage_type=stage_type, prompts=10, eval_split=0.5)
    report = run_recipe(load_recipe(path), runs_dir=tmp_path / "runs", console=Console(quiet=True))
    stage_dir = tmp_path / "runs" / "onp" / "pairs"
    held_out = [json.loads(line) for line in (stage_dir / "heldout_pairs.jsonl").read_text().splitlines()]
    trained_on = [json.loads(line) for line in (stage_dir / "pairs.jsonl").read_text().splitlines()]
    assert held_out and all(p["chosen_score"] > p["rejected_score"] for p in held_out)
    assert not {json.dumps(p["prompt"]) for p in held_out} & {json.dumps(p["prompt"]) for p in trained_on}
    objective = report.stages[0].objective
    assert objective is not None and objective.rows == len(held_out)
    assert set(objective.after) == {"preference_accuracy", "preference_margin", "chosen_logp_per_token"}
    assert objective.after != objective.before  # the trained model, not the input twice
    assert set(objective.change_stderr) == set(objective.after)
    saved = json.loads((stage_dir / "objective.json").read_text())
    assert saved["objective"]["rows"] == len(held_out)


def test_all_tied_samples_stop_the_stage_naming_the_method(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = _write(tmp_path, tiny_model_dir, stage_type="orpo", reward="flat")
    with pytest.raises(UserError, match="on-policy ORPO: all 5 prompts gave tied samples"):
        run_recipe(load_recipe(path), runs_dir=tmp_path / "runs", console=Console(quiet=True))


def test_on_policy_wants_a_prompt_dataset(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = _write(tmp_path, tiny_model_dir, stage_type="simpo", kind="preference")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert any("stages[0].data" in p and "prompt" in p for p in info.value.problems), info.value.problems
