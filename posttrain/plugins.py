"""Collect the declarations the modules of a plug-in package make about themselves (`STAGE = ...`, `FORMAT = ...`)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import TypeVar

Declaration = TypeVar("Declaration")


def declarations_in(package: str, path: Iterable[str], attribute: str, kind: type[Declaration]) -> dict[str, Declaration]:
    """`name → declaration` for every module of `package` whose `attribute` is a `kind`, in module-name order."""
    found: dict[str, Declaration] = {}
    for module_info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        declaration = getattr(importlib.import_module(f"{package}.{module_info.name}"), attribute, None)
        if isinstance(declaration, kind):
            found[declaration.name] = declaration  # type: ignore[attr-defined]
    return found
