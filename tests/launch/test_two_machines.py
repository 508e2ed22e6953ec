"""Two "machines" on this host, started by the shipped Slurm script: machine 0 runs the recipe, machine 1
joins its training stages.

`srun` and `scontrol` are stand-ins that start the script's per-node command
once per node on this host (SLURM_NODEID 0 and 1, one "GPU" each) and name
127.0.0.1 as the first node; everything else is real: two `posttrain run`
commands with the shipped DDP config meet at 127.0.0.1 and share the run
directory as a cluster's nodes share a filesystem. The stage equals the same
recipe trained in 1 process.
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


FAKE_SRUN = """#!/bin/bash
# Stand-in for srun: run the command once per node, here, in parallel; fail if any node fails.
while [[ "$1" == --* ]]; do shift; done
pids=()
for node in $(seq 0 $((SLURM_NNODES - 1))); do
  SLURM_NODEID=$node "$@" > "$NODE_LOGS/node$node.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""
FAKE_SCONTROL = "#!/bin/bash\necho 127.0.0.1\necho 127.0.0.2\n"


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
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "COLUMNS": "200",
        "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "1", "SLURM_JOB_NODELIST": "node[1-2]",
        "MAIN_PORT": str(_free_port()), "POSTTRAIN": f"{sys.executable} -m posttrain.cli", "NODE_LOGS": str(tmp_path),
    }
    script = REPO / "scripts" / "slurm" / "posttrain.sbatch"
    job = subprocess.run(
        ["bash", str(script), str(recipe), "ddp", "--runs-dir", str(runs)], cwd=REPO, env=env, timeout=400,
    )
    logs = [(tmp_path / f"node{n}.log").read_text() for n in (0, 1)]
    assert job.returncode == 0, "\n\n".join(log[-3000:] for log in logs)
    assert "machine 1: joined sft" in logs[1]
    assert "launching sft on 2 processes, 2 machine(s) (MULTI_GPU)" in logs[0]

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
