"""Pairwise stage settings TRL would refuse are refused when the recipe is validated, before a model loads."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.errors import RecipeError
from posttrain.recipe.loader import load_recipe
from posttrain.stages import STAGES
from posttrain.training.trl_options import choices_in_help, dpo_loss_types

RECIPE = """\
name: r
model: {{base: x}}
datasets: {{p: {{kind: preference, sources: [{{path: prefs.jsonl}}]}}}}
stages:
  - name: d
    type: dpo
    data: p
{settings}
"""


def _recipe(tmp_path: Path, settings: str) -> Path:
    (tmp_path / "prefs.jsonl").write_text("")
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(settings="\n".join(f"    {line}" for line in settings.splitlines())))
    return path


def _problems(tmp_path: Path, settings: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(_recipe(tmp_path, settings))
    return info.value.problems


def test_the_loss_types_are_the_ones_trl_itself_declares() -> None:
    from trl import DPOConfig

    declared = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"].metadata["help"]
    assert dpo_loss_types() == choices_in_help(declared)
    assert {"sigmoid", "ipo", "sigmoid_norm"} <= set(dpo_loss_types())


def test_a_loss_type_trl_accepts_that_the_old_hand_copied_list_lacked_validates(tmp_path: Path) -> None:
    spec = load_recipe(_recipe(tmp_path, "loss_type: [sigmoid, sigmoid_norm]\nloss_weights: [1.0, 0.5]")).recipe.stages[0]
    assert spec.loss_type == ["sigmoid", "sigmoid_norm"] and spec.loss_weights == [1.0, 0.5]


def test_an_unknown_loss_type_names_what_trl_knows(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "loss_type: sigmoidd")
    assert "stages[0].loss_type: unknown DPO loss_type ['sigmoidd']" in problem and "sigmoid_norm" in problem


@pytest.mark.parametrize(
    ("settings", "where", "says"),
    [
        ("loss_type: [sigmoid, sft]\nloss_weights: [1.0]", "9:5 stages[0].loss_weights", "1 weight(s) for 2 loss"),
        ("loss_weights: [1.0, 2.0]", "8:5 stages[0].loss_weights", "2 weight(s) for 1 loss"),
        ("loss_type: exo_pair", "8:5 stages[0].loss_type", "exo_pair needs label smoothing"),
        ("loss_type: []", "8:5 stages[0].loss_type", "at least one loss type"),
        ("lora: {target_modules: [q_proj, lm_head]}", "8:5 stages[0].lora", "names lm_head"),
    ],
)
def test_values_the_dpo_trainer_refuses_are_recipe_problems_at_their_yaml_path(
    tmp_path: Path, settings: str, where: str, says: str
) -> None:
    [problem] = _problems(tmp_path, settings)
    assert problem.startswith(f"{tmp_path / 'r.yaml'}:{where}: ") and says in problem, problem


def test_posttrain_validate_refuses_mismatched_loss_weights_with_exit_2(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "loss_type: [sigmoid, sft]\nloss_weights: [0.8, 0.2, 1.0]")
    result = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "validate", str(path)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join((result.stdout + result.stderr).split())
    assert "r.yaml:9:5 stages[0].loss_weights: 3 weight(s) for 2 loss type(s)" in output, output
    assert "Traceback" not in output


def test_each_pairwise_method_names_trl_classes_that_exist() -> None:
    from posttrain.training.pairwise import _imported

    for name in ("dpo", "orpo", "simpo"):
        method = importlib.import_module(f"posttrain.stages.{name}").METHOD
        assert STAGES[name].run == method.run and STAGES[name].held_out_objective == method.held_out_objective
        assert _imported(method.config).__name__.endswith("Config")
        assert _imported(method.trainer).__name__.endswith("Trainer")
