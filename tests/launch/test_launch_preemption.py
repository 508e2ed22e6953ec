"""A launched stage (2 processes) preempted by a SIGTERM to the orchestrator: the workers agree on one step,
checkpoint it, the command exits 75, and the rerun ends with the weights of an uninterrupted launched run.

Four steps make an epoch here; the signal comes after step 5, so the rerun resumes in the middle of a later epoch,
where it must skip that epoch's first batches in that epoch's own shuffled order (`ResumedEpochShuffle`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.launch.conftest import write_data

ROOT = Path(__file__).resolve().parents[2]
STEPS = 40
RECIPE = """\
name: pre
seed: 11
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
eval: {{on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, evaluate: false, lora: {{r: 4, dropout: 0.0}},
     train: {{max_steps: {steps}, batch_size: 2, grad_accum: 2, lr: 1.0e-2, logging_steps: 1, save_steps: 1000, max_length: 64}}}}
export: {{formats: [peft]}}
"""


def start(recipe: Path, runs: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(runs),
         "--set", "launch.num_processes=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=recipe.parent,
    )


def logged_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    return max((json.loads(line)["step"] for line in lines if line.strip()), default=0)


@pytest.mark.slow
def test_sigterm_to_the_orchestrator_checkpoints_every_rank_at_one_step(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_data(tmp_path / "data", chats=16)
    recipe = tmp_path / "pre.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, steps=STEPS))

    reference = start(recipe, tmp_path / "reference")
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]

    runs = tmp_path / "runs"
    process = start(recipe, runs)
    metrics = runs / "pre" / "sft" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while logged_step(metrics) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the stage finished before it could be preempted"
    process.send_signal(signal.SIGTERM)  # the orchestrator only: it forwards to its workers
    _, err = process.communicate(timeout=300)
    assert process.returncode == 75, err[-3000:]
    assert "preempted" in err and "Traceback" not in err
    (checkpoint,) = [p for p in (runs / "pre" / "sft").rglob("checkpoint-*") if p.is_dir()]
    assert 5 <= int(checkpoint.name.split("-")[1]) < STEPS

    rerun = start(recipe, runs)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert f"resuming from {checkpoint}" in " ".join(out.split()) or checkpoint.name in out
    final = load_file(str(runs / "pre" / "sft" / "adapter" / "adapter_model.safetensors"))
    expected = load_file(str(tmp_path / "reference" / "pre" / "sft" / "adapter" / "adapter_model.safetensors"))
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final), "resumed launched weights differ"
