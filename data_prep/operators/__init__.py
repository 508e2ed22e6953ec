"""The curation operator registry: every module in this package that declares `OPERATOR = Operator(...)`.

Adding an operator is adding one module here (or calling `register` from a
plug-in or a test); the dataset schema's curate steps, the cache fingerprint
and `prepare_dataset` read operators from `OPERATORS`. Operator modules import
their heavy libraries inside their apply function, so collecting the
declarations is cheap.
"""

from __future__ import annotations

import importlib
import pkgutil

from data_prep.operators.base import CurateStepModel, OpContext, Operator, OpResult
from data_prep.rows import Row


def _declared_in_this_package() -> dict[str, Operator]:
    found: dict[str, Operator] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        declaration = getattr(module, "OPERATOR", None)
        if isinstance(declaration, Operator):
            found[declaration.name] = declaration
    return dict(sorted(found.items()))


OPERATORS: dict[str, Operator] = _declared_in_this_package()
"""Operator name (the key of a curate step) → its declaration."""


def register(operator: Operator) -> None:
    """Add an operator declared outside this package (a plug-in, or a test's toy operator).

    Validate datasets with `data_prep.spec.dataset_model()` afterwards: it accepts
    every registered operator (the static `DatasetSpec` knows the built-in ones).
    """
    if operator.name in OPERATORS and OPERATORS[operator.name] is not operator:
        raise ValueError(f"curation operator {operator.name!r} is already registered")
    OPERATORS[operator.name] = operator


def unregister(name: str) -> None:
    OPERATORS.pop(name, None)


def operator_of(step: CurateStepModel) -> Operator:
    """The declaration behind a validated curate step (the one its model was built from)."""
    return type(step).operator


def settings_of(step: CurateStepModel) -> object:
    """A step's validated settings: the value under its operator's key."""
    return getattr(step, step.op)


def step_name(step: CurateStepModel) -> str:
    """How a step is named in rejects.jsonl and the report (`dedup.exact`, `pii`)."""
    return operator_of(step).step_label(settings_of(step))


def run_step(step: CurateStepModel, rows: list[Row], ctx: OpContext) -> OpResult:
    """Apply a step's operator to rows (`prepare_dataset` checks that every row is kept or removed)."""
    return operator_of(step).apply(rows, settings_of(step), ctx)


__all__ = [
    "OPERATORS",
    "CurateStepModel",
    "OpContext",
    "OpResult",
    "Operator",
    "operator_of",
    "register",
    "run_step",
    "settings_of",
    "step_name",
    "unregister",
]
