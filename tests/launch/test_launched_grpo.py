"""A GRPO stage on 2 processes: it trains (its LoRA moves) with the generation batch one process would use.

Each process generates for its share of the prompts; TRL gathers the
rewards so each prompt's group is normalised as a whole. With batch_size 2,
grad_accum 2 and 2 generations per prompt, one optimizer step is 4
completions (2 prompts) whether 1 process accumulates 2 micro-batches or 2
processes take 1 each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from safetensors.torch import load_file

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.stages.grpo import batch_layout

RECIPE = """\
name: rl
seed: 2
model: {{base: {model}}}
datasets:
  prompts: {{kind: prompt, sources: [{{path: prompts.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: grpo, type: grpo, data: prompts, evaluate: false, rewards: [{{fn: rewards.length:length_penalty}}],
     num_generations: 2, max_completion_length: 12, loss_type: grpo, lora: {{r: 4, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 2, batch_size: 2, grad_accum: 2, lr: 5.0e-2, logging_steps: 1}}}}
export: {{formats: [peft]}}
"""


def test_the_generation_batch_does_not_depend_on_the_process_count() -> None:
    for batch_size, grad_accum, generations in [(2, 2, 2), (1, 4, 8), (3, 2, 4), (4, 2, 3)]:
        completions_one = batch_size * batch_layout(batch_size, grad_accum, generations)[1]
        per_process = batch_layout(batch_size, grad_accum // 2, generations, processes=2)
        completions_two = per_process[0] * 2 * per_process[1]
        assert completions_two == completions_one
        assert completions_one % generations == 0


@pytest.mark.slow
def test_grpo_trains_on_two_processes(tmp_path: Path, tiny_model_dir: Path) -> None:
    # length_penalty reads each prompt's word budget from the `max_words` column: random replies over-run it unevenly.
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "max_words": 2 + i % 3} for i in range(8)
    ]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))

    run_recipe(load_recipe(recipe, ["launch.num_processes=2"]), runs_dir=tmp_path / "runs", console=Console(quiet=True))

    stage_dir = tmp_path / "runs" / "rl" / "grpo"
    stage = json.loads((stage_dir / "stage.json").read_text())
    assert stage["status"] == "completed" and stage["metrics"]["processes"] == 2
    weights = load_file(str(stage_dir / "adapter" / "adapter_model.safetensors"))
    assert sum(w.abs().sum().item() for k, w in weights.items() if "lora_B" in k) > 0, "LoRA B never moved"
    logged = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "reward" in r] == [1, 2]
