"""`--set a.b.c=value` overrides, applied to the YAML tree before validation.

A list element is addressed by its `name` (`stages.sft.train.lr=1e-4`) or by
its index (`stages.0.train.lr=1e-4`). Values are parsed as YAML scalars or
flow collections, so `--set eval.tasks=[pt_arith]` and `--set seed=7` work.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from posttrain.errors import RecipeError

Loc = tuple[str | int, ...]


def apply_overrides(document: Any, overrides: list[str]) -> set[Loc]:
    """Apply every override in place; return the YAML locations they set."""
    problems: list[str] = []
    touched: set[Loc] = set()
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {override!r}: expected KEY.PATH=VALUE")
            continue
        try:
            touched.add(_set(document, key.strip().split("."), _parse_value(raw_value)))
        except (KeyError, IndexError, TypeError) as exc:
            problems.append(f"--set {override!r}: {exc.args[0] if exc.args else exc}")
    if problems:
        raise RecipeError("bad --set overrides", problems=problems)
    return touched


def _parse_value(raw: str) -> Any:
    yaml = YAML(typ="safe", pure=True)
    try:
        return yaml.load(raw) if raw.strip() else ""
    except Exception:
        return raw


def _set(document: Any, parts: list[str], value: Any) -> Loc:
    node = document
    loc: list[str | int] = []
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(node, part)
            loc.append(index)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            loc.append(part)
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = CommentedMap()
                node = node[part]
        else:
            raise TypeError(f"{'.'.join(parts[:position])} is a value, not a mapping or list")
    return tuple(loc)


def _list_index(node: list[Any], part: str) -> int:
    for index, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    if part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
        return int(part) % len(node)
    names = [item.get("name") for item in node if isinstance(item, dict) and "name" in item]
    raise KeyError(f"no list element named {part!r}" + (f" (names: {', '.join(names)})" if names else ""))
