"""The grpo stage and on-policy DPO through the pipeline, on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.stages.grpo import wants_vllm

# A graded reward in a file beside the recipe: random text still differs in
# length, so groups are never all tied and the policy gradient is not zero.
REWARD_FILE = """\
from rewards import completion_text


def longer(completions, **kwargs):
    return [min(len(completion_text(c)), 40) / 40 for c in completions]
"""

RECIPE = """\
name: tiny-rl
seed: 3
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
  prompts: {{kind: prompt, sources: [{{path: data/prompts.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 1, batch_size: 4, lr: 1.0e-2, max_length: 64}}}}
{stage}
export: {{formats: [peft]}}
"""

GRPO_STAGE = """\
  - name: grpo
    type: grpo
    data: prompts
    rewards: [{fn: rewards.math:exact_number}, {fn: my_rewards.py:longer, weight: 0.5}]
    num_generations: 2
    max_completion_length: 8
    loss_type: grpo
    lora: {r: 4, target_modules: [q_proj, v_proj]}
    train: {max_steps: 2, batch_size: 4, lr: 5.0e-2, logging_steps: 1}
"""

DPO_STAGE = """\
  - name: dpo
    type: dpo
    data: prompts
    on_policy: {samples: 3, max_new_tokens: 8, rewards: [{fn: my_rewards.py:longer}]}
    lora: {r: 2}
    train: {max_steps: 2, batch_size: 2, lr: 1.0e-3, logging_steps: 1, save_steps: 1, max_length: 64}
"""


def _write(folder: Path, model: Path, stage: str) -> Path:
    (folder / "data").mkdir(parents=True)
    chat = [
        {"messages": [{"role": "user", "content": f"What is {i} + 2?"}, {"role": "assistant", "content": f"Answer: {i + 2}"}]}
        for i in range(8)
    ]
    prompts = [{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "answer": str(i + 5)} for i in range(5)]
    # A row without `answer`: exact_number must skip it, not crash.
    prompts.append({"prompt": [{"role": "user", "content": "Say hello."}], "constraints": {"max_words": 3}})
    for name, rows in (("chat", chat), ("prompts", prompts)):
        (folder / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "my_rewards.py").write_text(REWARD_FILE)
    path = folder / "tiny-rl.yaml"
    path.write_text(RECIPE.format(model=model, stage=stage))
    return path


def _run(path: Path, runs: Path):
    return run_recipe(load_recipe(path), runs_dir=runs, console=Console(quiet=True))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grpo_stage_trains_lora_and_logs_each_reward(tmp_path: Path, tiny_model_dir: Path) -> None:
    runs = tmp_path / "runs"
    report = _run(_write(tmp_path, tiny_model_dir, GRPO_STAGE), runs)
    stage_dir = runs / "tiny-rl" / "grpo"
    assert json.loads((stage_dir / "stage.json").read_text())["status"] == "completed"
    weights = load_file(str(stage_dir / "adapter" / "adapter_model.safetensors"))
    assert sum(w.abs().sum().item() for k, w in weights.items() if "lora_B" in k) > 0, "LoRA B never moved"
    assert len(report.stages[1].lineage.adapters) == 2

    logs = [r for r in _records(stage_dir / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in logs] == [1, 2]
    for record in logs:
        for name in ("exact_number", "longer"):
            assert {f"rewards/{name}/mean", f"rewards/{name}/std"} <= record.keys()
        # The recipe's weights reach TRL: the logged reward is 1.0 × exact_number + 0.5 × longer.
        expected = record["rewards/exact_number/mean"] + 0.5 * record["rewards/longer/mean"]
        assert record["reward"] == pytest.approx(expected, rel=1e-5)
        assert record["rewards/longer/std"] > 0, "a graded reward: random answers differ in length"


def test_on_policy_dpo_builds_pairs_then_trains_and_reuses_them(tmp_path: Path, tiny_model_dir: Path) -> None:
    runs = tmp_path / "runs"
    path = _write(tmp_path, tiny_model_dir, DPO_STAGE)
    report = _run(path, runs)
    stage_dir = runs / "tiny-rl" / "dpo"
    pairs = _records(stage_dir / "pairs.jsonl")
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    assert all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    metrics = report.stages[1].metrics
    assert metrics["pairs_prompts"] == 6
    assert metrics["pairs_pairs"] == len(pairs)
    assert metrics["pairs_pairs"] + metrics["pairs_ties"] + metrics["pairs_unscored"] == 6
    assert any("loss" in r for r in _records(stage_dir / "metrics.jsonl"))
    counts = f"| {metrics['pairs_prompts']} | {len(pairs)} | {metrics['pairs_ties']} | {metrics['pairs_unscored']} |"
    assert f"| dpo | prompts {counts}" in (runs / "tiny-rl" / "report.md").read_text()  # the report's Data section

    # A killed run resumes from its checkpoint with the pairs it already sampled.
    inode = (stage_dir / "pairs.jsonl").stat().st_ino
    stage = json.loads((stage_dir / "stage.json").read_text())
    (stage_dir / "stage.json").write_text(json.dumps({**stage, "status": "running"}))
    again = _run(path, runs)
    assert not again.stages[1].cached
    assert (stage_dir / "pairs.jsonl").stat().st_ino == inode
    assert again.stages[1].metrics["pairs_pairs"] == len(pairs)


@pytest.mark.parametrize("setting", [False, "auto"])
def test_cpu_generation_never_asks_for_vllm(setting: bool | str) -> None:
    if torch.cuda.is_available():
        pytest.skip("on a GPU, auto may pick vLLM")
    assert wants_vllm(setting) is False
