"""Shipped launcher configs that run on this CPU machine, on 2 gloo processes.

accelerate turns FSDP and DeepSpeed on only on accelerators: on CPUs a FSDP
config runs as plain multi-CPU DDP (result.json records what accelerate
actually ran). DeepSpeed needs the deepspeed package and a GPU. QLoRA runs
under DDP here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from tests.launch.conftest import write_data
from tests.launch.test_launch_equivalence import TRAIN

RECIPE = """\
name: on-cpu
seed: 3
model: {{base: {model}{quantize}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2, on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, dropout: 0.0}}, train: {{{train}}}}}
export: {{formats: [peft, merged]}}
"""


@pytest.mark.slow
@pytest.mark.parametrize(("config", "quantize"), [("fsdp", False), ("ddp", True)])
def test_shipped_config_trains_on_two_cpu_processes(
    config: str, quantize: bool, tmp_path: Path, nf4_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    write_data(tmp_path / "data")
    recipe = tmp_path / "on-cpu.yaml"
    recipe.write_text(RECIPE.format(model=nf4_model_dir, quantize=", quantize: 4bit" if quantize else "", train=TRAIN))
    loaded = load_recipe(recipe, [f"launch.config={config}", "launch.num_processes=2"])
    report = run_recipe(loaded, runs_dir=tmp_path / "runs", console=Console(quiet=True))

    stage_dir = tmp_path / "runs" / "on-cpu" / "sft"
    launch = json.loads((stage_dir / "launch" / "result.json").read_text())["launch"]
    expected = {"fsdp": "FSDP", "ddp": "MULTI_GPU"}[config] if torch.cuda.is_available() else "MULTI_CPU"
    assert launch == {"processes": 2, "distributed_type": expected}
    assert "pt_arith_mc" in report.stages[0].scores  # evaluated by the orchestrator, from the saved adapter
    assert (stage_dir / "export" / "merged" / "config.json").exists()
    assert (Path(report.stages[0].lineage.base).parent == tmp_path / "cache" / "models") is quantize
