"""The stage registry: every module in this package that declares `STAGE = StageType(...)`.

Adding a stage type is adding one module here; the recipe schema, its checks,
the plan and the runner read the type from `STAGES`. Stage modules import
their trainer libraries inside `run`, so collecting the declarations is cheap.
"""

from __future__ import annotations

import importlib
import pkgutil

from posttrain.stagekit import StageType


def _declared_in_this_package() -> dict[str, StageType]:
    found: dict[str, StageType] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        declaration = getattr(module, "STAGE", None)
        if isinstance(declaration, StageType):
            found[declaration.name] = declaration
    return found


STAGES: dict[str, StageType] = _declared_in_this_package()
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
