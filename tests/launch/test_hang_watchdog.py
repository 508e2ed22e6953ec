"""A launched stage with one rank stalled (the `step2:STALL1` failpoint) fails after `launch.hang_timeout`
with which rank is stuck, where (its Python stack) and what to check, instead of waiting forever; no process
is left behind and the rerun finishes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch.conftest import write_data

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """\
name: hang
seed: 2
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4, dropout: 0.0}},
     train: {{max_steps: 4, batch_size: 2, grad_accum: 2, lr: 1.0e-2, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft]}}
"""


def run(recipe: Path, runs: Path, failpoint: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("POSTTRAIN_FAILPOINT", None)
    if failpoint:
        env["POSTTRAIN_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(runs),
         "--set", "launch.num_processes=2", "--set", "launch.hang_timeout=6"],
        capture_output=True, text=True, env=env, cwd=recipe.parent, timeout=600,
    )


def workers_alive(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "posttrain.launch.worker" in line and marker in line]


@pytest.mark.slow
def test_a_stalled_rank_fails_the_stage_with_its_stack(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_data(tmp_path / "data", chats=16)
    recipe = tmp_path / "hang.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    started = time.monotonic()
    failed = run(recipe, tmp_path / "runs", "step2:STALL1")
    assert failed.returncode == 1, failed.stderr[-3000:]
    message = failed.stderr
    assert "stage sft: no rank finished an optimizer step for" in message
    assert "launch.hang_timeout: 6 s" in message
    assert "rank 1 (NOT in a collective)" in message and "failpoint (posttrain/failpoints.py" in message
    assert "rank 0 (waiting in a collective)" in message
    assert "likely stuck: rank 1" in message and "What to check" in message
    assert "Traceback" not in message
    assert time.monotonic() - started < 240
    assert workers_alive(str(tmp_path)) == [], "a worker outlived its stage"

    rerun = run(recipe, tmp_path / "runs", None)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (tmp_path / "runs" / "hang" / "sft" / "adapter" / "adapter_model.safetensors").exists()
