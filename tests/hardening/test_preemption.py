"""Preemption: SIGTERM or SIGUSR1 mid-training checkpoints at the next step and exits 75; the rerun equals an
uninterrupted run.

The signal comes from the `step<N>:<SIGNAL>` failpoint (posttrain/failpoints.py), sent by the process to itself
at the end of optimizer step N, so the test does not race the trainer. `save_steps` is far beyond the stage's
steps: without the preemption checkpoint the rerun would start from step 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6

RECIPE = """\
name: tiny
seed: 5
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: [q_proj, v_proj]}}, evaluate: false,
     train: {{max_steps: {steps}, batch_size: 4, lr: 1.0e-2, logging_steps: 1, save_steps: 1000, max_length: 64}}}}
export: {{formats: [peft]}}
"""


def workspace(folder: Path, model: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                          {"role": "assistant", "content": f"Answer: {i + 7}"}]} for i in range(24)]
    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny.yaml").write_text(RECIPE.format(model=model, steps=STEPS))
    return folder / "tiny.yaml"


def cli(recipe: Path, runs: Path, failpoint: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("POSTTRAIN_FAILPOINT", None)
    if failpoint:
        env["POSTTRAIN_FAILPOINT"] = failpoint
    return subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=recipe.parent,
    )


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def adapter(runs: Path) -> dict[str, torch.Tensor]:
    return load_file(str(runs / "tiny" / "sft" / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    code, _, err = finish(cli(workspace(folder / "ws", tiny_model_dir), folder / "runs"))
    assert code == 0, err[-3000:]
    return adapter(folder / "runs")


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])
def test_signal_mid_training_checkpoints_that_step_and_the_rerun_equals_an_uninterrupted_run(
    sig: str, uninterrupted: dict[str, torch.Tensor], tmp_path: Path, tiny_model_dir: Path
) -> None:
    recipe, runs = workspace(tmp_path / "ws", tiny_model_dir), tmp_path / "runs"
    code, _, err = finish(cli(recipe, runs, failpoint=f"step3:{sig}"))
    assert code == 75, err[-3000:]
    assert f"preempted ({sig} received: checkpoint of step 3" in " ".join(err.split())
    assert "Traceback" not in err
    checkpoints = sorted(p.name for p in (runs / "tiny" / "sft").rglob("checkpoint-*") if p.is_dir())
    assert checkpoints == ["checkpoint-3"]
    assert not (runs / "tiny" / "sft" / "adapter").exists()

    code, out, err = finish(cli(recipe, runs))
    assert code == 0, err[-3000:]
    assert "resuming from" in out and "checkpoint-3" in out
    final = adapter(runs)
    assert final.keys() == uninterrupted.keys()
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final), "resumed weights differ"


def test_signal_outside_training_stops_at_once_with_the_resumable_status(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Before any training (here: while the run starts up) a SIGTERM ends the command with 75 and one message."""
    recipe, runs = workspace(tmp_path / "ws", tiny_model_dir), tmp_path / "runs"
    process = cli(recipe, runs, failpoint="curation:SIGTERM")
    code, _, err = finish(process)
    assert code == 75, err[-3000:]
    assert "preempted (SIGTERM received)" in err and "Traceback" not in err
    code, _, err = finish(cli(recipe, runs))
    assert code == 0, err[-3000:]
