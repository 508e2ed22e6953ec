"""A stage that fails on one rank fails the run with that rank's own error, and the stage is marked failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.errors import TrainingError
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe

# Every rank loads the recipe's reward file; on rank 1 it lacks something (as a machine may lack a package).
REWARDS = '''\
import os

if os.environ.get("RANK") == "1":
    raise ImportError("the reward needs a package that rank 1 lacks")


def picky(completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]
'''
RECIPE = """\
name: failing
model: {{base: {model}}}
datasets:
  prompts: {{kind: prompt, sources: [{{path: prompts.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: dpo, type: dpo, data: prompts, evaluate: false,
     on_policy: {{samples: 2, max_new_tokens: 4, rewards: [{{fn: my_rewards.py:picky}}]}},
     train: {{max_steps: 1, batch_size: 2, grad_accum: 2, max_length: 64}}}}
"""


@pytest.mark.slow
def test_the_failing_ranks_error_fails_the_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 5?"}], "answer": str(i + 5)} for i in range(4)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "my_rewards.py").write_text(REWARDS)
    recipe = tmp_path / "failing.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))

    with pytest.raises(TrainingError) as caught:
        run_recipe(load_recipe(recipe, ["launch.num_processes=2"]), runs_dir=tmp_path / "runs", console=Console(quiet=True))
    message = str(caught.value)
    print(message)
    assert message.startswith("stage dpo, rank 1 failed: ")
    assert "the reward needs a package that rank 1 lacks" in message
    stage = json.loads((tmp_path / "runs" / "failing" / "dpo" / "stage.json").read_text())
    assert stage["status"] == "failed" and "rank 1 lacks" in stage["error"]
