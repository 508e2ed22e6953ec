"""The stage registry: every module in this package that declares `STAGE = StageType(...)`.

Adding a stage type is adding one module here; the recipe schema, its checks,
the plan and the runner read the type from `STAGES`. Stage modules import
their trainer libraries inside `run`, so collecting the declarations is cheap.
"""

from __future__ import annotations

from posttrain.plugins import declarations_in
from posttrain.stagekit import StageType

STAGES: dict[str, StageType] = declarations_in(__name__, __path__, "STAGE", StageType)
"""Stage type name → its declaration."""


def register(stage_type: StageType) -> None:
    """Add a stage type declared outside this package (a plug-in, or a test's toy stage)."""
    if stage_type.name in STAGES and STAGES[stage_type.name] is not stage_type:
        raise ValueError(f"stage type {stage_type.name!r} is already registered")
    STAGES[stage_type.name] = stage_type


def unregister(name: str) -> None:
    STAGES.pop(name, None)


def fact_types() -> dict[str, type]:
    """Kind → typed fact class, from every registered stage type's `facts` (to read stage.json back)."""
    return {fact.kind: fact for stage_type in STAGES.values() for fact in stage_type.facts}


__all__ = ["STAGES", "StageType", "fact_types", "register", "unregister"]
