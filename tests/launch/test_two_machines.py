"""Two "machines" on this host: machine 0 runs the recipe, machine 1 joins its training stages.

Both are `posttrain run` commands with the shipped DDP config, 1 process each,
meeting at 127.0.0.1; they share the run directory as machines of a cluster
share a filesystem. The stage equals the same recipe trained in 1 process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe
from tests.launch.conftest import write_data
from tests.launch.test_launch_equivalence import TRAIN

REPO = Path(__file__).resolve().parents[2]
RECIPE = """\
name: two-machines
seed: 3
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4, dropout: 0.0}}, train: {{{train}}}}}
export: {{formats: [peft]}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_machines_on_one_host(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_data(tmp_path / "data")
    recipe = tmp_path / "two.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, train=TRAIN))
    runs = tmp_path / "runs"
    launch = [
        "--accelerate-config", "ddp", "--num-processes", "2", "--set", "launch.num_machines=2",
        "--set", "launch.main_process_ip=127.0.0.1", "--set", f"launch.main_process_port={_free_port()}",
    ]
    command = [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(runs), *launch]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    machines = [
        subprocess.Popen(
            [*command, "--set", f"launch.machine_rank={rank}"], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    outputs = [m.communicate(timeout=400)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    assert "machine 1: joined sft" in outputs[1]

    stage_dir = runs / "two-machines" / "sft"
    assert json.loads((stage_dir / "stage.json").read_text())["status"] == "completed"
    assert json.loads((stage_dir / "launch" / "result.json").read_text())["launch"]["processes"] == 2
    assert (runs / "two-machines" / "machine1" / "sft-launch.log").exists()

    single = run_recipe(load_recipe(recipe), runs_dir=tmp_path / "single", console=Console(quiet=True))
    assert single.stages[0].fingerprint == json.loads((stage_dir / "stage.json").read_text())["fingerprint"]
    one = load_file(str(tmp_path / "single" / "two-machines" / "sft" / "adapter" / "adapter_model.safetensors"))
    two = load_file(str(stage_dir / "adapter" / "adapter_model.safetensors"))
    for key, weight in one.items():
        torch.testing.assert_close(two[key], weight, rtol=1e-5, atol=1e-7)
