"""The export format registry: every module in this package that declares `FORMAT = ExportFormat(...)`.

Adding a format is adding one module here (or calling `register()` from a
plug-in or a test); the recipe schema, the runner, `posttrain export` and the
model cards read formats from `EXPORT_FORMATS`. Format modules import their
heavy libraries inside `write`, so collecting the declarations is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable

from posttrain.errors import UserError
from posttrain.export.declaration import ExportFormat
from posttrain.plugins import declarations_in

EXPORT_FORMATS: dict[str, ExportFormat] = declarations_in(__name__, __path__, "FORMAT", ExportFormat)
"""Format name → its declaration."""


def register(fmt: ExportFormat) -> None:
    """Add a format declared outside this package (a plug-in, or a test's toy format)."""
    if fmt.name in EXPORT_FORMATS and EXPORT_FORMATS[fmt.name] is not fmt:
        raise ValueError(f"export format {fmt.name!r} is already registered")
    missing = [need for need in fmt.needs if need not in EXPORT_FORMATS]
    if missing:
        raise ValueError(f"export format {fmt.name!r} needs unregistered format(s) {', '.join(missing)}")
    EXPORT_FORMATS[fmt.name] = fmt


def unregister(name: str) -> None:
    EXPORT_FORMATS.pop(name, None)


def default_formats() -> list[str]:
    """What a recipe without `export.formats` writes."""
    return [name for name, fmt in EXPORT_FORMATS.items() if fmt.default]


def expand_formats(names: Iterable[str]) -> list[str]:
    """The formats to write for `names`: with everything they need, each after its needs."""
    names = list(names)
    unknown = sorted(set(names) - set(EXPORT_FORMATS))
    if unknown:
        raise UserError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(EXPORT_FORMATS)}")
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for need in EXPORT_FORMATS[name].needs:
                visit(need)
            ordered.append(name)

    for name in EXPORT_FORMATS:  # registry order, so the order does not depend on how the recipe lists them
        if name in names:
            visit(name)
    return ordered


def formats_for_stage(names: Iterable[str], *, final: bool, has_adapter: bool) -> list[ExportFormat]:
    """The formats a stage gets: whole-model formats only for the final stage or a stage that trained a whole
    model; adapter formats only where there is an adapter."""
    return [
        EXPORT_FORMATS[name] for name in expand_formats(names)
        if (final or not has_adapter or not _whole_model(name)) and (has_adapter or not EXPORT_FORMATS[name].needs_adapter)
    ]


def _whole_model(name: str) -> bool:
    fmt = EXPORT_FORMATS[name]
    return fmt.whole_model or any(_whole_model(need) for need in fmt.needs)


__all__ = ["EXPORT_FORMATS", "ExportFormat", "default_formats", "expand_formats", "formats_for_stage", "register",
           "unregister"]
