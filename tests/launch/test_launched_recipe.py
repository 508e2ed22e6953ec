"""A whole recipe (SFT → DPO) with its training stages on 2 processes: it runs, caches and resumes after a kill.

The kill is real: `posttrain run --num-processes 2` is started as a command,
SIGKILLed with its whole process group once the SFT stage has written a
checkpoint, and run again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.pipeline.plan import plan_run
from posttrain.pipeline.runner import run_recipe
from posttrain.pipeline.session import open_session
from posttrain.recipe.loader import load_recipe
from tests.launch.conftest import write_data

RECIPE = """\
name: launched
seed: 1
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: data/prefs.jsonl}}]}}
eval: {{tasks: [pt_arith_mc], limit: 2, batch_size: 2, on_base: false}}
stages:
  - {{name: sft, type: sft, data: chat, lora: {{r: 4}},
     train: {{max_steps: 40, batch_size: 2, grad_accum: 2, lr: 1.0e-2, logging_steps: 1, save_steps: 2,
             max_length: 64}}}}
  - {{name: dpo, type: dpo, data: prefs, lora: {{r: 2}},
     train: {{max_steps: 2, batch_size: 2, grad_accum: 2, lr: 1.0e-3, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft, merged]}}
"""
REPO = Path(__file__).resolve().parents[2]


def _workers_alive(run_dir: Path) -> list[int]:
    """Pids of launched workers whose job file lies under `run_dir`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "posttrain.launch.worker" in cmdline and str(run_dir) in cmdline:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_two_process_recipe_runs_caches_and_resumes_after_a_kill(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_data(tmp_path / "data", chats=16, prefs=8)
    recipe = tmp_path / "launched.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    runs = tmp_path / "runs"
    run_dir = runs / "launched"
    checkpoints = run_dir / "sft" / "checkpoints"

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (tmp_path / "killed.log").open("w") as log:
        command = subprocess.Popen(
            [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--num-processes", "2", "--runs-dir", str(runs)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        # Kill at the first whole checkpoint of the 40-step stage; any one of them leaves a stage to resume.
        deadline = time.time() + 240
        while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
            assert command.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        os.killpg(command.pid, signal.SIGKILL)
        command.wait()
    deadline = time.time() + 30
    while _workers_alive(run_dir):  # the workers die with their launcher
        assert time.time() < deadline, f"workers still alive after the kill: {_workers_alive(run_dir)}"
        time.sleep(0.5)
    assert json.loads((run_dir / "sft" / "stage.json").read_text())["status"] == "running"

    loaded = load_recipe(recipe, ["launch.num_processes=2"])
    plan = plan_run(open_session(loaded, runs_dir=runs))
    assert [(s.name, s.status) for s in plan.stages] == [("sft", "resume"), ("dpo", "run")]
    resumed_from = int(plan.stages[0].resume_from.name.split("-")[1])

    report = run_recipe(loaded, runs_dir=runs, console=Console(quiet=True))
    sft_dir = run_dir / "sft"
    assert [s.cached for s in report.stages] == [False, False]
    state = json.loads((sft_dir / "checkpoints" / "checkpoint-40" / "trainer_state.json").read_text())
    assert state["global_step"] == 40
    steps = [json.loads(line)["step"] for line in (sft_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 40 and steps.count(1) == 1  # continued from the checkpoint, never restarted at step 1
    job = json.loads((sft_dir / "launch" / "job.json").read_text())
    assert job["resume_from"].endswith(f"checkpoint-{resumed_from}")
    for name in ("sft", "dpo"):
        stage = json.loads((run_dir / name / "stage.json").read_text())
        assert stage["status"] == "completed" and stage["metrics"]["processes"] == 2
        assert "pt_arith_mc" in json.loads((run_dir / name / "eval.json").read_text())["scores"]
    assert len(report.stages[1].lineage.adapters) == 2
    assert (run_dir / "dpo" / "export" / "merged" / "config.json").exists()

    again = run_recipe(loaded, runs_dir=runs, console=Console(quiet=True))
    assert [s.cached for s in again.stages] == [True, True]
    # The process count is no part of a stage: the same recipe on 1 process finds the same stages cached.
    single = run_recipe(load_recipe(recipe), runs_dir=runs, console=Console(quiet=True))
    assert [s.cached for s in single.stages] == [True, True]
