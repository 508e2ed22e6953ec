"""The plan: what each stage starts from, its fingerprint, and whether a run reuses, resumes or trains it.

`plan_run` is the only place where fingerprints and cache states are decided:
`posttrain plan` prints its result and `posttrain run` carries it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from posttrain.errors import UserError
from posttrain.fingerprint import fingerprint, stage_fingerprint
from posttrain.pipeline.datasets import dataset_fingerprints, used_datasets
from posttrain.pipeline.session import RunSession
from posttrain.recipe.schema import Recipe
from posttrain.run_layout import BASE, RunDir
from posttrain.rundir import usable_checkpoint
from posttrain.stagekit import StageType
from posttrain.stagekit.specs import StageCommon
from posttrain.stages import STAGES

Status = Literal["cached", "resume", "run", "rerun", "forced"]


@dataclass
class StageNode:
    """A stage in the graph: the model it starts from and the other models it reads."""

    spec: StageCommon
    input: str
    """Name of the stage whose output this one starts from, or `base`."""
    model_inputs: dict[str, str] = field(default_factory=dict)
    """Spec field → `base` or an earlier stage it names besides `input` (a distill teacher)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stage_type(self) -> StageType:
        return STAGES[self.spec.type]  # type: ignore[attr-defined]

    @property
    def depends_on(self) -> list[str]:
        return [self.input, *self.model_inputs.values()]


@dataclass
class PlannedStage(StageNode):
    data_fingerprint: str = ""
    fingerprint: str = ""
    status: Status = "run"
    resume_from: Path | None = None
    """The checkpoint a `resume` continues from."""
    damaged_checkpoints: list[tuple[Path, str]] = field(default_factory=list)
    """Newer checkpoints a resume skips, with why (a kill while they were written)."""


@dataclass
class RunPlan:
    run_dir: Path
    base_fingerprint: str
    stages: list[PlannedStage]


def stage_graph(recipe: Recipe) -> list[StageNode]:
    """Stages in run order with their inputs resolved; `after` defaults to the previous stage."""
    nodes: list[StageNode] = []
    previous = BASE
    for spec in recipe.stages:
        source = spec.after or previous
        known = {BASE, *(n.name for n in nodes)}
        extra = {}
        for key in STAGES[spec.type].model_inputs:  # type: ignore[attr-defined]
            ref = getattr(spec, key, None)
            if ref in known and ref != source:
                extra[key] = ref
        nodes.append(StageNode(spec=spec, input=source, model_inputs=extra))
        previous = spec.name
    return nodes


def upstream_fingerprint(node: StageNode, fingerprints: dict[str, str]) -> str:
    """What a stage's models come from: its input's fingerprint, and those of the other stages it reads."""
    if not node.model_inputs:
        return fingerprints[node.input]  # unchanged for every stage without other model inputs: caches stay valid
    return fingerprint(fingerprints[node.input], *(fingerprints[ref] for ref in node.model_inputs.values()))


def downstream(nodes: Iterable[StageNode], names: set[str]) -> set[str]:
    """`names` and every stage that (transitively) depends on one of them."""
    result = set(names)
    for node in nodes:
        if any(name in result for name in node.depends_on):
            result.add(node.name)
    return result


def plan_run(session: RunSession, *, force: Iterable[str] = ()) -> RunPlan:
    """Every stage's input, fingerprint and cache state, read from the run directory as it is now."""
    recipe = session.recipe
    nodes = stage_graph(recipe)
    force = set(force)
    unknown = force - {n.name for n in nodes}
    if unknown:
        raise UserError(f"--force names no stage of this recipe: {', '.join(sorted(unknown))}")
    forced = downstream(nodes, force)
    data_fps = dataset_fingerprints(session, used_datasets(session))
    fingerprints = {BASE: session.base_fingerprint}
    run = RunDir(session.run_dir)
    planned: list[PlannedStage] = []
    for node in nodes:
        data_fp = data_fps[node.spec.data]
        stage_fp = stage_fingerprint(node.spec, upstream_fingerprint(node, fingerprints), data_fp, recipe.seed)
        fingerprints[node.name] = stage_fp
        status, resume_from, damaged = _cache_state(run, node.name, stage_fp, forced=node.name in forced)
        planned.append(
            PlannedStage(
                spec=node.spec, input=node.input, model_inputs=node.model_inputs, data_fingerprint=data_fp,
                fingerprint=stage_fp, status=status, resume_from=resume_from, damaged_checkpoints=damaged,
            )
        )
    return RunPlan(run_dir=session.run_dir, base_fingerprint=session.base_fingerprint, stages=planned)


def _cache_state(
    run: RunDir, stage: str, stage_fp: str, *, forced: bool
) -> tuple[Status, Path | None, list[tuple[Path, str]]]:
    record = run.read_stage(stage) or {}
    if forced:
        return "forced", None, []
    if record.get("fingerprint") != stage_fp:
        return ("rerun" if record else "run"), None, []
    if record.get("status") == "completed":
        return "cached", None, []
    checkpoint, damaged = usable_checkpoint(run.checkpoints_dir(stage))
    return ("resume" if checkpoint else "rerun"), checkpoint, damaged
