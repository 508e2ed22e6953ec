"""Adding a stage type is adding one declaration: a toy type defined here goes through validate, plan and run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import torch
from pydantic import Field
from rich.console import Console
from safetensors.torch import load_file

from posttrain.errors import RecipeError
from posttrain.models.lineage import Lineage
from posttrain.pipeline.plan import plan_run
from posttrain.pipeline.runner import run_recipe
from posttrain.pipeline.session import open_session
from posttrain.recipe.loader import load_recipe
from posttrain.stagekit import StageContext, StageResult, StageType
from posttrain.stagekit.specs import StageCommon
from posttrain.stages import STAGES, register, unregister


class ShrinkStage(StageCommon):
    type: Literal["shrink"]
    factor: float = Field(0.5, gt=0, description="Multiply every weight of the input model by this.")


def run_shrink(ctx: StageContext, spec: ShrinkStage) -> StageResult:
    model = ctx.load_input_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(spec.factor)
    model.save_pretrained(ctx.model_dir)
    ctx.tokenizer.save_pretrained(ctx.model_dir)
    rows = len(Path(ctx.dataset(spec.data).train_path).read_text().splitlines())
    return StageResult(lineage=Lineage(str(ctx.model_dir)), model=model, metrics={"rows_seen": rows})


SHRINK = StageType(name="shrink", spec=ShrinkStage, run=run_shrink, data_kinds=("chat",))

RECIPE = """\
name: toy
model: {{base: {model}}}
datasets:
  chat: {{sources: [{{path: chat.jsonl}}]}}
  prefs: {{kind: preference, sources: [{{path: prefs.jsonl}}]}}
stages:
  - {{name: small, type: shrink, data: {data}, factor: 0.5, evaluate: false{extra}}}
export: {{formats: [peft]}}
"""


@pytest.fixture
def shrink_registered() -> Iterator[None]:
    register(SHRINK)
    yield
    unregister("shrink")


def write_recipe(tmp_path: Path, model: Path, data: str = "chat", extra: str = "") -> Path:
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": turn}) + "\n" for _ in range(3)))
    pair = {"prompt": turn[:1], "chosen": "hello", "rejected": "go away"}
    (tmp_path / "prefs.jsonl").write_text(json.dumps(pair) + "\n")
    path = tmp_path / "toy.yaml"
    path.write_text(RECIPE.format(model=model, data=data, extra=extra))
    return path


def test_a_toy_stage_type_validates_plans_and_runs(shrink_registered: None, tmp_path: Path, tiny_model_dir: Path) -> None:
    loaded = load_recipe(write_recipe(tmp_path, tiny_model_dir))
    assert loaded.recipe.stages[0].factor == 0.5

    runs = tmp_path / "runs"
    plan = plan_run(open_session(loaded, runs_dir=runs))
    assert [(s.name, s.stage_type, s.status) for s in plan.stages] == [("small", SHRINK, "run")]

    report = run_recipe(loaded, runs_dir=runs, console=Console(quiet=True))
    stage = report.stages[0]
    assert stage.fingerprint == plan.stages[0].fingerprint and stage.metrics == {"rows_seen": 3}
    shrunk = load_file(str(runs / "toy" / "small" / "model" / "model.safetensors"))
    original = load_file(str(tiny_model_dir / "model.safetensors"))
    torch.testing.assert_close(shrunk["model.norm.weight"], original["model.norm.weight"] * 0.5)

    assert plan_run(open_session(loaded, runs_dir=runs)).stages[0].status == "cached"
    assert run_recipe(loaded, runs_dir=runs, console=Console(quiet=True)).stages[0].cached


def test_the_toy_type_gets_the_same_checks_as_shipped_types(
    shrink_registered: None, tmp_path: Path, tiny_model_dir: Path
) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tmp_path, tiny_model_dir, data="prefs", extra=", factr: 2"))
    text = info.value.render()
    assert "unknown key (did you mean 'factor'?)" in text
    assert "a shrink stage trains on chat data; dataset 'prefs' is kind 'preference'" in text


def test_an_unregistered_type_is_unknown(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert "shrink" not in STAGES
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tmp_path, tiny_model_dir))
    assert "unknown stage type 'shrink'" in info.value.render()
