"""On-policy DPO on 2 processes: rank 0 samples the pairs once, the other rank reads them, and they are
exactly the pairs one process samples.

The reward notes which rank calls it: only rank 0 scores samples, as many
times as the single process does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe

REWARDS = '''\
import os
from pathlib import Path


def longer(completions, **kwargs):
    calls = Path(__file__).with_name(f"calls-{os.environ.get('WORLD_SIZE', '1')}.txt")
    with calls.open("a") as f:
        f.write(os.environ.get("RANK", "0") + "\\n")
    return [float(len(c[0]["content"])) for c in completions]
'''
RECIPE = """\
name: onpolicy
seed: 5
model: {{base: {model}}}
datasets:
  prompts: {{kind: prompt, sources: [{{path: prompts.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: dpo, type: dpo, data: prompts, evaluate: false, lora: {{r: 2}},
     on_policy: {{samples: 3, max_new_tokens: 6, rewards: [{{fn: my_rewards.py:longer}}]}},
     train: {{max_steps: 1, batch_size: 2, grad_accum: 2, max_length: 64}}}}
export: {{formats: [peft]}}
"""


@pytest.mark.slow
def test_rank_0_samples_the_pairs_one_process_samples(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "answer": str(i + 5)} for i in range(6)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "my_rewards.py").write_text(REWARDS)
    recipe = tmp_path / "onpolicy.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    quiet = Console(quiet=True)

    run_recipe(load_recipe(recipe), runs_dir=tmp_path / "one", console=quiet)
    run_recipe(load_recipe(recipe, ["launch.num_processes=2"]), runs_dir=tmp_path / "two", console=quiet)

    one, two = tmp_path / "one" / "onpolicy" / "dpo", tmp_path / "two" / "onpolicy" / "dpo"
    stage = json.loads((two / "stage.json").read_text())
    assert stage["status"] == "completed" and stage["metrics"]["processes"] == 2
    assert (two / "pairs.jsonl").read_text() == (one / "pairs.jsonl").read_text()
    assert (two / "pairs.json").read_text() == (one / "pairs.json").read_text()
    assert len((one / "pairs.jsonl").read_text().splitlines()) >= 2
    single_calls = (tmp_path / "calls-1.txt").read_text().split()
    launched_calls = (tmp_path / "calls-2.txt").read_text().split()
    assert launched_calls == ["0"] * len(single_calls)  # rank 1 never sampled nor scored
