"""The stage DAG: which model each stage starts from, and whether it must run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posttrain.recipe.schema import Recipe, StageCommon

BASE = "base"


@dataclass
class PlannedStage:
    spec: StageCommon
    input: str
    """Name of the stage whose output this one starts from, or `base`."""


def plan_stages(recipe: Recipe) -> list[PlannedStage]:
    """Stages in run order with their inputs resolved; `after` defaults to the previous stage."""
    planned: list[PlannedStage] = []
    previous = BASE
    for stage in recipe.stages:
        planned.append(PlannedStage(spec=stage, input=stage.after or previous))
        previous = stage.name
    return planned


def downstream(planned: list[PlannedStage], names: set[str]) -> set[str]:
    """`names` and every stage that (transitively) starts from one of them."""
    result = set(names)
    for stage in planned:
        if stage.input in result:
            result.add(stage.spec.name)
    return result


def stage_dir(run_dir: Path, name: str) -> Path:
    return run_dir / name
