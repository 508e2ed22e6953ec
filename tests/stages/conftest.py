"""Tiny-model runs of the preference stages: data, a one-stage recipe, and the held-out objective
measured on the stage's input model and on its trained model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from transformers import AutoTokenizer

from data_prep import load_prepared
from posttrain.pipeline.runner import RunReport, run_recipe
from posttrain.recipe.loader import load_recipe
from posttrain.stagekit import StageContext

RECIPE = """\
name: {name}
seed: 3
model: {{base: {model}}}
datasets:
  {data}: {{kind: {kind}, sources: [{{path: data/prefs.jsonl}}], eval_split: 0.25}}
eval: {{on_base: false}}
stages:
  - {{name: {name}, type: {type}, data: {data}, evaluate: false, {settings}
     lora: {{r: 8}}, train: {{max_steps: {steps}, batch_size: 8, lr: {lr}, logging_steps: 1, max_length: 64}}}}
export: {{formats: [peft]}}
"""


def write_pairs(folder: Path, n: int = 48) -> Path:
    """Arithmetic prompts; chosen states the answer, rejected is one of a few evasions of varied length."""
    folder.mkdir(parents=True, exist_ok=True)
    evasions = ["no", "I do not know.", "How many now? I do not know, sorry, no."]
    path = folder / "prefs.jsonl"
    with path.open("w") as f:
        for i in range(n):
            prompt = [{"role": "user", "content": f"What is {i} + 7?"}]
            row = {"prompt": prompt, "chosen": f"{i} + 7 = {i + 7}. Answer: {i + 7}", "rejected": evasions[i % 3]}
            f.write(json.dumps(row) + "\n")
    return path


@dataclass
class Measured:
    before: dict[str, float]
    after: dict[str, float]
    report: RunReport
    ctx: StageContext
    spec: Any


def run_and_measure(
    tmp_path: Path, model_dir: Path, *, stage_type: str, kind: str = "preference", settings: str = "",
    steps: int = 12, lr: float = 5e-3,
) -> Measured:
    """Run a one-stage recipe on the tiny model, then its STAGE.held_out_objective before and after."""
    write_pairs(tmp_path / "data")
    recipe_path = tmp_path / f"{stage_type}.yaml"
    recipe_path.write_text(RECIPE.format(
        name=stage_type, model=model_dir, data="pairs", kind=kind, type=stage_type, settings=settings,
        steps=steps, lr=lr,
    ))
    loaded = load_recipe(recipe_path)
    report = run_recipe(loaded, runs_dir=tmp_path / "runs", console=Console(quiet=True))
    stage = report.stages[0]
    ctx = StageContext(
        model_spec=loaded.recipe.model, eval_spec=loaded.recipe.eval, seed=loaded.recipe.seed,
        stage_dir=report.run_dir / stage.name, input=report.base.lineage,
        tokenizer=AutoTokenizer.from_pretrained(model_dir),
        datasets={"pairs": load_prepared("pairs", report.run_dir / "data" / "pairs")},
        console=Console(quiet=True), base_dir=tmp_path,
    )
    spec = loaded.recipe.stages[0]
    # What the pipeline measured after the stage (objective.json), before and after it.
    assert stage.objective is not None, "the stage measured no held-out objective"
    return Measured(stage.objective.before, stage.objective.after, report, ctx, spec)


@pytest.fixture
def measure(tmp_path: Path, tiny_model_dir: Path):
    def _measure(stage_type: str, **kwargs: Any) -> Measured:
        return run_and_measure(tmp_path, tiny_model_dir, stage_type=stage_type, **kwargs)

    return _measure
