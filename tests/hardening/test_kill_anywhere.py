"""`kill -9` anywhere in a run, then the same command again: the result equals an uninterrupted run.

Each failpoint (posttrain/failpoints.py) makes the CLI SIGKILL itself at one
phase: data curation, training (right after a checkpoint), evaluation (before
its result is saved), export, and the leaderboard write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from posttrain.failpoints import POINTS

ROOT = Path(__file__).resolve().parents[2]

RECIPE = """\
name: tiny
seed: 3
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
  more: {{sources: [{{path: more.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 3, batch_size: 2}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4, target_modules: [q_proj, v_proj]}},
     train: {{max_steps: 3, batch_size: 4, lr: 1.0e-2, logging_steps: 1, save_steps: 2, max_length: 64}}}}
  - {{name: again, type: sft, data: more, lora: {{r: 2, target_modules: [q_proj]}},
     train: {{max_steps: 1, batch_size: 4, lr: 1.0e-2, max_length: 64}}, evaluate: false}}
export: {{formats: [peft, merged]}}
"""


def write_workspace(folder: Path, model: Path) -> Path:
    folder.mkdir(parents=True)
    for name, offset in (("chat", 0), ("more", 50)):
        rows = [
            {"messages": [{"role": "user", "content": f"What is {i} + 7?"},
                          {"role": "assistant", "content": f"Answer: {i + 7}"}]}
            for i in range(offset, offset + 16)
        ]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny.yaml").write_text(RECIPE.format(model=model))
    return folder / "tiny.yaml"


def run_cli(recipe: Path, runs: Path, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("POSTTRAIN_FAILPOINT", None)
    if failpoint:
        env["POSTTRAIN_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(runs)],
        capture_output=True, text=True, env=env, cwd=recipe.parent, timeout=600,
    )


def outcome(runs: Path) -> dict:
    """What a finished run leaves that must not depend on how often it was killed."""
    run_dir = runs / "tiny"
    adapters = {
        stage: load_file(str(run_dir / stage / "adapter" / "adapter_model.safetensors")) for stage in ("sft", "again")
    }
    with sqlite3.connect(runs / "leaderboard.sqlite") as db:
        board = sorted(db.execute("SELECT run_name, stage, fingerprint, task, score FROM results").fetchall())
    steps = [json.loads(line)["step"] for line in (run_dir / "sft" / "metrics.jsonl").read_text().splitlines()]
    return {
        "adapters": adapters,
        "scores": {s: json.loads((run_dir / s / "eval.json").read_text())["scores"] for s in ("base", "sft")},
        "board": board,
        "exports": sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("*/export/*/*.safetensors")),
        "logged_steps": steps,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    folder = tmp_path_factory.mktemp("reference")
    recipe = write_workspace(folder / "ws", tiny_model_dir)
    result = run_cli(recipe, folder / "runs")
    assert result.returncode == 0, result.stderr[-3000:]
    return outcome(folder / "runs")


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_a_killed_run_finishes_as_if_never_killed(point: str, reference: dict, tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = write_workspace(tmp_path / "ws", tiny_model_dir)
    runs = tmp_path / "runs"
    killed = run_cli(recipe, runs, failpoint=point)
    assert killed.returncode == -9, f"the {point} failpoint was never reached:\n{killed.stderr[-2000:]}"

    rerun = run_cli(recipe, runs)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if point == "training":
        assert "resuming from" in rerun.stdout
    final = outcome(runs)
    for stage, weights in reference["adapters"].items():
        assert weights.keys() == final["adapters"][stage].keys()
        assert all(torch.equal(weights[k], final["adapters"][stage][k]) for k in weights), f"{stage} adapter differs"
    assert final["scores"] == reference["scores"]
    assert final["board"] == reference["board"], "leaderboard rows lost or duplicated"
    assert final["exports"] == reference["exports"]
    assert final["logged_steps"] == reference["logged_steps"]
