"""2 processes × batch 4 train exactly what 1 process × batch 4 × 2 accumulation steps trains.

The same recipe runs once in process and once under `accelerate launch` on 2
gloo processes: each process then accumulates grad_accum / 2 = 1 micro-batch.
One SGD step on 8 examples (every example in the step, so the order of the
data does not matter): the update is lr × the gradient, so equal LoRA weights
mean equal gradients, not just equal signs as after a first Adam step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from tests.launch.conftest import write_data

RECIPE = """\
name: same-step
seed: 3
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: data/prefs.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4, dropout: 0.0}}, train: {{{train}}}}}
  - {{name: dpo, type: dpo, after: base, data: prefs, evaluate: false, lora: {{r: 4, dropout: 0.0}},
     train: {{{train}}}}}
export: {{formats: [peft]}}
"""
TRAIN = ("max_steps: 1, batch_size: 4, grad_accum: 2, lr: 0.5, optim: sgd, scheduler: constant, "
         "max_grad_norm: 1.0e9, logging_steps: 1, max_length: 64")


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.slow
def test_two_processes_equal_one_process_with_accumulation(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_data(tmp_path / "data")
    recipe = tmp_path / "same.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, train=TRAIN))
    quiet = Console(quiet=True)
    single = run_recipe(load_recipe(recipe), runs_dir=tmp_path / "one", console=quiet)
    launched = run_recipe(load_recipe(recipe, ["launch.num_processes=2"]), runs_dir=tmp_path / "two", console=quiet)

    # The process count is not part of what a stage is: same fingerprints, so either run's cache serves both.
    assert [s.fingerprint for s in launched.stages] == [s.fingerprint for s in single.stages]
    for name in ("sft", "dpo"):
        one, two = tmp_path / "one" / "same-step" / name, tmp_path / "two" / "same-step" / name
        assert json.loads((two / "stage.json").read_text())["metrics"]["processes"] == 2
        assert "processes" not in json.loads((one / "stage.json").read_text())["metrics"]
        loss_one = json.loads((one / "metrics.jsonl").read_text().splitlines()[0])["loss"]
        loss_two = json.loads((two / "metrics.jsonl").read_text().splitlines()[0])["loss"]
        assert loss_two == pytest.approx(loss_one, rel=1e-5), name

        w_one = load_file(str(one / "adapter" / "adapter_model.safetensors"))
        w_two = load_file(str(two / "adapter" / "adapter_model.safetensors"))
        assert w_one.keys() == w_two.keys()
        moved = [k for k in w_one if "lora_B" in k]
        assert all(w_one[k].abs().max() > 0 for k in moved), "one SGD step must move every LoRA B"
        worst = max(_relative_difference(w_two[k], w_one[k]) for k in w_one)
        print(f"{name}: loss 1 process {loss_one:.8f}, 2 processes {loss_two:.8f}; LoRA max rel diff {worst:.2e}")
        assert worst < 1e-5, f"{name}: LoRA weights differ by {worst:.2e} relative"
