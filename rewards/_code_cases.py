"""Test cases for :func:`rewards.code.code_exec`, split so that the graded program never sees an answer.

An assert test ``assert sorted(f(x)) == [1, 2]`` becomes

* *probes*: the parts that need the candidate's code (``f(x)``), which the
  candidate's program evaluates and prints as ``repr`` text, and
* a *check*: the rest of the assertion with probe values in their place
  (``sorted(_v[0]) == [1, 2]``), evaluated by the parent (plain ``==``
  against a literal) or by a second sandbox run that holds no candidate code.

Probe values cross back as Python literals (``ast.literal_eval``), so an
object with a rigged ``__eq__`` or ``__repr__`` never reaches the check as
anything but data it printed. A stdin/stdout case (``{"input": ..,
"output": ..}``) feeds the program its input and compares what it printed.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["AssertCase", "IoCase", "lift_assert", "parse_case", "same_output"]

# Names a check may use without the candidate: evaluated in the judge, not lifted.
SAFE_NAMES = frozenset({
    "abs", "all", "any", "bin", "bool", "bytes", "chr", "dict", "divmod", "enumerate", "filter", "float",
    "frozenset", "hex", "int", "isinstance", "len", "list", "map", "math", "max", "min", "oct", "ord",
    "pow", "range", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "type", "zip",
})
_NO_VALUE = object()


@dataclass(frozen=True)
class AssertCase:
    """An ``assert`` test: candidate-side ``probes`` and a parent-side ``check`` over ``_v[i]``."""

    source: str
    probes: tuple[str, ...]
    check: str
    expected: Any = _NO_VALUE  # set when the check is just ``_v[0] == <literal>``

    @property
    def simple(self) -> bool:
        """Whether the parent can compare directly, without a judge run."""
        return self.expected is not _NO_VALUE


@dataclass(frozen=True)
class IoCase:
    """A stdin/stdout test: run the program on ``stdin``, compare its output to ``stdout``."""

    stdin: str
    stdout: str


def parse_case(test: Any, index: int) -> AssertCase | IoCase:
    """One test case from a dataset value: an assert string or an ``{"input", "output"}`` mapping.

    >>> parse_case("assert square(3) == 9", 0)
    AssertCase(source='assert square(3) == 9', probes=('square(3)',), check='_v[0] == 9', expected=9)
    >>> parse_case({"input": "3\\n", "output": "9\\n"}, 0)
    IoCase(stdin='3\\n', stdout='9\\n')
    """
    if isinstance(test, dict):
        if "input" not in test or "output" not in test:
            raise ValueError(f"code_exec: test {index} is a mapping without 'input' and 'output': {test!r}")
        return IoCase(str(test["input"]), str(test["output"]))
    return lift_assert(str(test), index)


def lift_assert(source: str, index: int = 0) -> AssertCase:
    """Split ``assert <expr>`` into candidate probes and a check (see the module docstring).

    >>> case = lift_assert("assert abs(area(2) - 12.56) < 0.01")
    >>> case.probes, case.check, case.simple
    (('area(2)',), 'abs(_v[0] - 12.56) < 0.01', False)
    """
    try:
        tree = ast.parse(source.strip())
    except SyntaxError as exc:
        raise ValueError(f"code_exec: test {index} does not parse as Python: {exc}") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise ValueError(f"code_exec: test {index} must be one `assert <expression>` (or an input/output "
                         f"mapping), got: {source.strip()[:200]!r}; the grader runs outside the program, "
                         "so write one assert per input")
    lifter = _Lifter(_bound_names(tree.body[0].test), index, source)
    check = lifter.visit(tree.body[0].test)
    check_src = ast.unparse(check)
    return AssertCase(source.strip(), tuple(lifter.probes), check_src, _simple_expected(check))


class _Lifter(ast.NodeTransformer):
    """Replace each maximal candidate-dependent expression by ``_v[i]``."""

    def __init__(self, bound: set[str], index: int, source: str):
        self.bound, self.index, self.source = bound, index, source
        self.probes: list[str] = []

    def visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) and self._needs_candidate(node):
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if used & self.bound:
                raise ValueError(f"code_exec: test {self.index} calls the solution with names bound inside "
                                 f"the test ({', '.join(sorted(used & self.bound))}): {self.source.strip()[:200]!r}; "
                                 "write one assert per input")
            self.probes.append(ast.unparse(node))
            slot = ast.Subscript(ast.Name("_v", ast.Load()), ast.Constant(len(self.probes) - 1), ast.Load())
            return ast.copy_location(slot, node)
        return self.generic_visit(node)

    def _needs_candidate(self, node: ast.AST) -> bool:
        root = node
        while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
            root = root.func if isinstance(root, ast.Call) else root.value
        return isinstance(root, ast.Name) and root.id not in SAFE_NAMES and root.id not in self.bound


def _bound_names(expr: ast.AST) -> set[str]:
    bound: set[str] = set()
    for node in ast.walk(expr):
        if isinstance(node, ast.comprehension):
            bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            bound |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            bound.add(node.target.id)
    return bound


def _simple_expected(check: ast.AST) -> Any:
    """The literal of a ``_v[0] == <literal>`` check (either order), else ``_NO_VALUE``."""
    if not (isinstance(check, ast.Compare) and len(check.ops) == 1 and isinstance(check.ops[0], ast.Eq)):
        return _NO_VALUE
    left, right = check.left, check.comparators[0]
    if ast.unparse(right) == "_v[0]":
        left, right = right, left
    if ast.unparse(left) != "_v[0]":
        return _NO_VALUE
    try:
        return ast.literal_eval(right)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_VALUE


def probe_program(code: str) -> str:
    """The candidate's program: its code as module ``solution``, then the probes read from stdin.

    Nothing in it is secret: the probes are test inputs; answers stay in the parent.
    """
    return f"""\
import json as _json, os as _os, sys as _sys
_probes = _json.loads(_sys.stdin.read())
_g = {{"__name__": "solution"}}
exec(compile({code!r}, "solution.py", "exec"), _g)
_out = []
for _p in _probes:
    try:
        _out.append(repr(eval(_p, _g)))
    except BaseException:
        _out.append(None)
try:
    _sys.stdout.flush()
except BaseException:
    pass
_os.write(1, ("\\n" + _json.dumps(_out) + "\\n").encode())
"""


def judge_program(checks: list[tuple[str, list[Any]]]) -> str:
    """A trusted program (no candidate code) that prints, as JSON, whether each check holds."""
    lines = ["import json, math", "_results = []"]
    for check, values in checks:
        lines += [f"_v = [{', '.join(repr(v) for v in values)}]",
                  "try:", f"    _results.append(bool({check}))", "except BaseException:", "    _results.append(False)"]
    lines.append("print(json.dumps(_results))")
    return "\n".join(lines) + "\n"


def last_json_list(stdout: str, length: int) -> list[Any] | None:
    """The last line of ``stdout`` that is a JSON list of ``length`` items, else ``None``.

    The last such line, not the last line: the program's own buffered prints
    may land after it. Whatever the program prints, it cannot know the answers.
    """
    for line in reversed(stdout.splitlines()):
        if line.startswith("["):
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, list) and len(value) == length:
                return value
    return None


def literal(text: Any) -> Any:
    """A probe's printed value as data, or ``_NO_VALUE`` when it is not a Python literal."""
    if not isinstance(text, str):
        return _NO_VALUE
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_VALUE


def is_value(value: Any) -> bool:
    """Whether ``value`` came out of :func:`literal` as data."""
    return value is not _NO_VALUE


def same_output(got: str, expected: str) -> bool:
    """Stdout equality up to trailing spaces on lines and trailing blank lines.

    >>> same_output("9  \\n\\n", "9")
    True
    """
    def norm(text: str) -> list[str]:
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    return norm(got) == norm(expected)
