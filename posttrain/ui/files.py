"""Every file a request names goes through here: it must lie inside one of the served roots."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import HTTPException

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
"""A run, stage or recipe name: one path segment, no leading dot, nothing a shell or a URL would bend."""


def not_found(what: str = "not found") -> HTTPException:
    return HTTPException(status_code=404, detail=what)


def check_name(name: str) -> str:
    """`name` when it is a plain name (one segment, no `..`, no hidden file); 404 otherwise."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise not_found()
    return name


def inside(root: Path, relative: str) -> Path:
    """`root/relative` when it resolves (links followed) to an existing file or folder inside `root`; else 404.

    Every segment must be a plain name, so `..`, absolute paths, hidden files (the run lock)
    and NUL bytes are refused before the file system is asked.
    """
    parts = [p for p in relative.replace("\\", "/").split("/") if p]
    if not parts or any(not _NAME.match(p) or ".." in p for p in parts):
        raise not_found()
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if not target.is_relative_to(base) or not target.exists():
        raise not_found()
    return target
