"""Imports point down: no cycle among posttrain's parts, and the libraries below it stand alone.

Every import counts, including those inside functions: a lazy import is still
a dependency, only a cheaper one.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a source file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def part_of(module: str) -> str | None:
    """The posttrain part a module belongs to: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    if parts[0] != "posttrain" or len(parts) < 2:
        return None
    return parts[1]


def posttrain_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / "posttrain").rglob("*.py"):
        here = part_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for module in imported_modules(path):
            there = part_of(module)
            if here and there and there != here and _exists(there):
                graph[here].add(there)
    return graph


def _exists(part: str) -> bool:
    # `from posttrain import x` names a part only when x is a subpackage or module.
    return (ROOT / "posttrain" / part).is_dir() or (ROOT / "posttrain" / f"{part}.py").is_file()


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_posttrain_parts() -> None:
    cycle = find_cycle(posttrain_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_export_does_not_reach_into_the_pipeline() -> None:
    assert "pipeline" not in posttrain_graph().get("export", set())


def test_libraries_below_posttrain_never_import_it() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for library in ("data_prep", "rewards")
        for path in (ROOT / library).rglob("*.py")
        for module in imported_modules(path)
        if module == "posttrain" or module.startswith("posttrain.")
    ]
    assert offenders == []
