"""The stage DAG: which model each stage starts from, and whether it must run."""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.recipe.schema import Recipe, StageCommon

BASE = "base"


@dataclass
class PlannedStage:
    spec: StageCommon
    input: str
    """Name of the stage whose output this one starts from, or `base`."""
    teacher: str | None = None
    """A distill stage's teacher when it names `base` or an earlier stage other than `input`."""

    @property
    def depends_on(self) -> list[str]:
        return [self.input] if self.teacher is None else [self.input, self.teacher]


def plan_stages(recipe: Recipe) -> list[PlannedStage]:
    """Stages in run order with their inputs resolved; `after` defaults to the previous stage."""
    planned: list[PlannedStage] = []
    previous = BASE
    for stage in recipe.stages:
        source = stage.after or previous
        teacher = getattr(stage, "teacher", None)
        known = teacher == BASE or any(p.spec.name == teacher for p in planned)
        planned.append(PlannedStage(spec=stage, input=source, teacher=teacher if known and teacher != source else None))
        previous = stage.name
    return planned


def upstream_fingerprint(stage: PlannedStage, fingerprints: dict[str, str]) -> str:
    """What a stage's models come from: its input's fingerprint, and its teacher's when that is another stage."""
    if stage.teacher is None:
        return fingerprints[stage.input]  # unchanged for every stage without a separate teacher: caches stay valid
    from posttrain.fingerprint import fingerprint

    return fingerprint(fingerprints[stage.input], fingerprints[stage.teacher])


def downstream(planned: list[PlannedStage], names: set[str]) -> set[str]:
    """`names` and every stage that (transitively) starts from one of them."""
    result = set(names)
    for stage in planned:
        if any(name in result for name in stage.depends_on):
            result.add(stage.spec.name)
    return result
