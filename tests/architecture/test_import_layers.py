"""Imports point down: the order of ARCHITECTURE.md's parts table holds, and the libraries below posttrain stand alone.

Every import counts, including those inside functions: a lazy import is still
a dependency, only a cheaper one. The order is read from ARCHITECTURE.md itself,
so the page and this test cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS_HEADING = "## Parts, top to bottom"
OUTSIDE = ("data_prep", "rewards")
"""Libraries of their own, listed last in the table: they never import posttrain (checked separately)."""


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute module names a source file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
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


def posttrain_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Part → the other parts it imports, for the posttrain package under `root`."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (root / "posttrain").rglob("*.py"):
        here = part_of(".".join(path.relative_to(root).with_suffix("").parts))
        for module in imported_modules(path, root):
            there = part_of(module)
            if here and there and there != here and _exists(there, root):
                graph[here].add(there)
    return graph


def _exists(part: str, root: Path = ROOT) -> bool:
    # `from posttrain import x` names a part only when x is a subpackage or module.
    return (root / "posttrain" / part).is_dir() or (root / "posttrain" / f"{part}.py").is_file()


def layers_from_architecture(text: str) -> dict[str, int]:
    """Part → its row in the "Parts, top to bottom" table (0 = top); a row's parts share one layer.

    A part is what a row's first cell names in backticks: `pipeline/` or `cli.py` → pipeline, cli.
    """
    section = text.split(PARTS_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past the header and |---|
    layers: dict[str, int] = {}
    for index, row in enumerate(rows):
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([^`]+)`", first_cell):
            layers[name.removesuffix("/").removesuffix(".py")] = index
    return layers


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a part from a part listed above it, and every part the table does not list."""
    problems = [f"{part} is not in ARCHITECTURE.md's parts table" for part in sorted(
        {p for p in graph} | {q for targets in graph.values() for q in targets}) if part not in layers]
    for here in sorted(graph):
        for there in sorted(graph[here]):
            if here in layers and there in layers and layers[there] < layers[here]:
                problems.append(f"{here} imports {there}, which the table lists above it")
    return problems


def all_parts() -> set[str]:
    """Every part of posttrain: its subpackages and top-level modules (less the package's own __init__)."""
    return {p.stem for p in (ROOT / "posttrain").iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}


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


def test_imports_follow_the_order_of_the_architecture_table() -> None:
    layers = layers_from_architecture((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    graph = posttrain_graph()
    for part in all_parts():
        graph.setdefault(part, set())  # a part importing nothing must still be in the table
    assert upward_imports(graph, layers) == []
    assert {*OUTSIDE} <= set(layers) and all(layers[o] == max(layers.values()) for o in OUTSIDE)


TABLE = """# x

## Parts, top to bottom (imports only point down)

| part | holds |
|---|---|
| `cli.py`, `terminal.py` | commands |
| `pipeline/` | the run |
| `training/` | trainers |
| `errors.py` | errors |

## Next section

| `ignored/` | a table of another section |
"""


def test_the_table_parser_reads_rows_as_layers() -> None:
    assert layers_from_architecture(TABLE) == {"cli": 0, "terminal": 0, "pipeline": 1, "training": 2, "errors": 3}


def test_the_order_check_finds_a_planted_upward_import() -> None:
    layers = layers_from_architecture(TABLE)
    clean = {"cli": {"terminal", "pipeline"}, "terminal": {"cli"}, "pipeline": {"training", "errors"},
             "training": {"errors"}}
    assert upward_imports(clean, layers) == []  # down, or within one row
    planted = {**clean, "training": {"errors", "pipeline"}}
    assert upward_imports(planted, layers) == ["training imports pipeline, which the table lists above it"]
    assert upward_imports({**clean, "newpart": {"errors"}}, layers) == ["newpart is not in ARCHITECTURE.md's parts table"]


def test_the_real_check_fails_on_an_upward_import_planted_in_a_copy_of_the_tree(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "posttrain", copy / "posttrain", ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
    (copy / "posttrain" / "errors.py").write_text(
        (ROOT / "posttrain" / "errors.py").read_text(encoding="utf-8") + "\nfrom posttrain.pipeline import runner\n"
    )
    layers = layers_from_architecture((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert upward_imports(posttrain_graph(copy), layers) == ["errors imports pipeline, which the table lists above it"]


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
