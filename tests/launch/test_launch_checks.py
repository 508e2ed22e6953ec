"""The `launch:` block at validate time: shipped configs validate, impossible combinations are recipe errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from rich.console import Console

from posttrain.errors import RecipeError, UserError
from posttrain.launch.launcher import accelerate_argv
from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.launch_checks import config_path, read_accelerate_config, shipped_configs_dir
from posttrain.recipe.loader import load_recipe
from tests.launch.conftest import write_data

REPO = Path(__file__).resolve().parents[2]
RECIPE = """\
name: checks
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: data/chat.jsonl}}]}}
stages:
  - name: sft
    type: sft
    data: chat
    train: {{grad_accum: 8}}
"""


@pytest.fixture
def recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_data(tmp_path / "data")
    path = tmp_path / "checks.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def _problems(path: Path, overrides: list[str]) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides)
    return caught.value.problems


@pytest.mark.parametrize(("name", "kind", "zero"), [
    ("ddp", "MULTI_GPU", None), ("fsdp", "FSDP", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3),
])
def test_shipped_configs_validate(recipe: Path, name: str, kind: str, zero: int | None) -> None:
    path = config_path(name, recipe.parent)
    assert path == shipped_configs_dir() / f"{name}.yaml"
    config = read_accelerate_config(path)
    assert (config.distributed_type, config.zero_stage, config.num_processes) == (kind, zero, 8)
    assert load_config_from_file(str(path)).distributed_type == kind  # accelerate reads it too
    loaded = load_recipe(recipe, [f"launch.config={name}"])
    assert loaded.recipe.launch.config == name


def test_a_missing_config_is_a_recipe_error_and_exit_2(recipe: Path, tmp_path: Path) -> None:
    problems = _problems(recipe, ["launch.config=nowhere.yaml"])
    assert len(problems) == 1 and "launch.config" in problems[0] and "not found" in problems[0]
    assert str(tmp_path / "nowhere.yaml") in problems[0]  # relative to the recipe's folder

    not_a_config = tmp_path / "list.yaml"
    not_a_config.write_text("- 1\n- 2\n")
    assert "YAML mapping" in _problems(recipe, [f"launch.config={not_a_config}"])[0]

    result = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--accelerate-config", "missing.yaml"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    assert f"launch.config: accelerate config file not found: {tmp_path / 'missing.yaml'}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("name", "allowed"), [("fsdp", False), ("zero3", False), ("zero2", True), ("ddp", True)])
def test_a_4bit_base_cannot_be_sharded(recipe: Path, name: str, allowed: bool) -> None:
    overrides = [f"launch.config={name}", "model.quantize=4bit"]
    if allowed:
        load_recipe(recipe, overrides)
        return
    (problem,) = _problems(recipe, overrides)
    assert "launch.config" in problem and "4-bit base" in problem


def test_processes_must_split_the_accumulation_and_the_machines(recipe: Path) -> None:
    (problem,) = _problems(recipe, ["launch.num_processes=3"])
    assert f"{recipe}:9:" in problem  # the line of the stage's train block
    assert "stages[0].train.grad_accum: grad_accum 8 does not split over 3 processes" in problem

    problems = _problems(recipe, ["launch.num_processes=4", "launch.num_machines=3", "launch.machine_rank=3"])
    assert any("launch.num_processes: 4 processes do not split evenly over 3 machines" in p for p in problems)
    assert any("launch.machine_rank: machine_rank 3 but only 3 machines" in p for p in problems)
    assert any("launch.main_process_ip: 3 machines need the address of machine 0" in p for p in problems)


def test_more_processes_per_machine_than_gpus(recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no GPU; the check runs where torch sees some, so pretend it sees two.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    (problem,) = _problems(recipe, ["launch.config=ddp"])
    assert "launch.num_processes: 8 processes per machine but this machine has 2 GPU(s) for MULTI_GPU" in problem
    load_recipe(recipe, ["launch.config=ddp", "launch.num_processes=4", "launch.num_machines=2",
                         "launch.main_process_ip=10.0.0.1"])  # 2 per machine fits


def test_launch_settings_pass_through_to_accelerate(recipe: Path, tmp_path: Path) -> None:
    loaded = load_recipe(recipe, [
        "launch.config=ddp", "launch.num_processes=8", "launch.num_machines=2", "launch.machine_rank=1",
        "launch.main_process_ip=10.0.0.1", "launch.main_process_port=29555",
    ])
    argv = accelerate_argv(loaded.recipe, loaded.base_dir, tmp_path / "job.json")
    pairs = dict(zip(argv[3:-3:2], argv[4:-3:2], strict=True))
    assert pairs == {
        "--config_file": str(shipped_configs_dir() / "ddp.yaml"), "--num_processes": "8", "--num_machines": "2",
        "--machine_rank": "1", "--main_process_port": "29555", "--main_process_ip": "10.0.0.1",
        # precision follows the recipe (fp32 on this CPU), never the config's bf16
        "--mixed_precision": "no" if not torch.cuda.is_available() else pairs["--mixed_precision"],
        "--dynamo_backend": "no",
    }
    assert argv[-3:] == ["-m", "posttrain.launch.worker", str(tmp_path / "job.json")]


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_a_deepspeed_config_without_deepspeed_is_a_clear_error(recipe: Path, tmp_path: Path) -> None:
    loaded = load_recipe(recipe, ["launch.config=zero2", "launch.num_processes=2"])
    with pytest.raises(UserError, match=r"zero2\.yaml is a DeepSpeed config but deepspeed is not installed"):
        run_recipe(loaded, runs_dir=tmp_path / "runs", console=Console(quiet=True))
    stage = json.loads((tmp_path / "runs" / "checks" / "sft" / "stage.json").read_text())
    assert stage["status"] == "failed"
    assert [h["outcome"] for h in stage["history"]] == ["failed"]  # the report says this run failed the stage
