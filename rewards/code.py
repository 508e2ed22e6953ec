"""Reward for model-written Python, graded outside the graded program.

The candidate's program runs in :func:`rewards.sandbox.run_python` and gets
only inputs: the calls a test makes (``square(3)``) on stdin, or a test's
stdin text. The trusted parent judges what it printed; expected values, test
sources and any pass marker never enter the sandbox, so reading its own
files or frames, replacing builtins or returning an object whose ``__eq__``
is always true earns nothing (see :mod:`rewards._code_cases`).
"""

from __future__ import annotations

import ast
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewards._code_cases import (
    AssertCase,
    IoCase,
    is_value,
    judge_program,
    last_json_list,
    literal,
    parse_case,
    probe_program,
    same_output,
)
from rewards._common import column, completion_text
from rewards.sandbox import check_sandbox, run_python

__all__ = ["code_exec", "extract_code", "split_tests"]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The Python code in a reply: the last ```python block, else the last fenced block, else all of it.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_code("def f(): return 1")
    'def f(): return 1'
    """
    blocks = _FENCE.findall(text)
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if python:
        return python[-1]
    if blocks:
        return blocks[-1][1]
    return text


def split_tests(tests: Any) -> list[Any]:
    """One entry per test case: an assert string or an ``{"input", "output"}`` mapping.

    ``tests`` is a list of assert strings or of input/output mappings, the
    same as a JSON string, or one string of several asserts (each top-level
    statement is one case).

    >>> split_tests("assert f(1) == 1\\nassert f(2) == 4")
    ['assert f(1) == 1', 'assert f(2) == 4']
    >>> split_tests(["assert f(1) == 1"])
    ['assert f(1) == 1']
    """
    if tests is None:
        return []
    if isinstance(tests, str):
        stripped = tests.strip()
        if stripped.startswith("["):
            try:
                return split_tests(json.loads(stripped))
            except ValueError:
                pass
        try:
            tree = ast.parse(tests)
        except SyntaxError as exc:
            raise ValueError(f"code_exec: tests do not parse as Python: {exc}") from None
        return [ast.get_source_segment(tests, node) or ast.unparse(node) for node in tree.body]
    if isinstance(tests, dict) and isinstance(tests.get("inputs"), list):  # {"inputs": [..], "outputs": [..]}
        inputs, outputs = tests["inputs"], tests.get("outputs")
        if not isinstance(outputs, list) or len(outputs) != len(inputs):
            raise ValueError(f"code_exec: tests have {len(inputs)} inputs but outputs {outputs!r:.80}")
        return [{"input": i, "output": o} for i, o in zip(inputs, outputs, strict=True)]
    return [t if isinstance(t, dict) else str(t) for t in tests]


def code_exec(
    completions: list[Any],
    tests: Any,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    allow_weak_sandbox: bool = False,
    **kwargs: Any,
) -> list[float]:
    """The fraction of ``tests`` that the reply's code passes, judged outside its sandbox.

    ``tests`` is a dataset column: per row, a string of asserts, a list of
    assert strings, or a list of ``{"input": stdin, "output": stdout}``
    mappings (see :func:`split_tests`). For asserts the solution is loaded as
    module ``solution`` (its ``if __name__ == "__main__":`` block does not
    run) and only the calls that need it are evaluated there; for
    input/output cases the program runs once per input. Each test must be one
    ``assert <expression>``; anything that stops the program (timeout, crash,
    memory, code that does not even load) scores 0.0, as does a row without
    tests. Raises :class:`rewards.sandbox.SandboxUnavailable` when this
    machine has no OS sandbox, unless ``allow_weak_sandbox`` (or
    ``POSTTRAIN_SANDBOX=weak``) accepts the weak one.

    >>> reply = "```python\\ndef square(x):\\n    return x * x\\n```"
    >>> code_exec([reply], tests=[["assert square(3) == 9", "assert square(-2) == 4", "assert square(0) == 1"]])
    [0.6666666666666666]
    >>> code_exec(["print(int(input()) ** 2)"], tests=[[{"input": "7", "output": "49"}]])
    [1.0]
    """
    check_sandbox(allow_weak=allow_weak_sandbox)  # refuses here, before any code runs, if there is no sandbox
    rows = column(tests, len(completions), "tests")
    jobs = [(extract_code(completion_text(c)), [parse_case(t, i) for i, t in enumerate(split_tests(r))])
            for c, r in zip(completions, rows, strict=True)]
    limits = {"timeout_s": timeout_s, "memory_mb": memory_mb, "allow_weak": allow_weak_sandbox}
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: _grade(*job, limits), jobs))


def _grade(code: str, cases: list[AssertCase | IoCase], limits: dict[str, Any]) -> float:
    if not cases:
        return 0.0
    asserts = [c for c in cases if isinstance(c, AssertCase)]
    passed = _grade_asserts(code, asserts, limits) if asserts else 0
    for case in cases:
        if isinstance(case, IoCase):
            result = run_python(code, stdin=case.stdin, **limits)
            passed += result.ok and same_output(result.stdout, case.stdout)
    return passed / len(cases)


def _grade_asserts(code: str, cases: list[AssertCase], limits: dict[str, Any]) -> int:
    """How many assert cases hold: probes run with the candidate, checks in the parent or a judge."""
    probes = [p for case in cases for p in case.probes]
    result = run_python(probe_program(code), stdin=json.dumps(probes), **limits)
    printed = last_json_list(result.stdout, len(probes)) if result.ok else None
    if printed is None:
        return 0  # the program did not load, crashed, timed out or garbled its answer line
    values = [literal(text) for text in printed]
    passed, judged, start = 0, [], 0
    for case in cases:
        mine, start = values[start:start + len(case.probes)], start + len(case.probes)
        if not all(is_value(v) for v in mine):
            continue  # a value that is not plain data (e.g. a rigged __eq__) fails its test
        if case.simple:
            passed += _equal(mine[0], case.expected)
        else:
            judged.append((case.check, mine))
    if judged:
        verdict = run_python(judge_program(judged), **limits)
        flags = last_json_list(verdict.stdout, len(judged)) if verdict.ok else None
        passed += sum(flag is True for flag in flags or [])
    return passed


def _equal(got: Any, expected: Any) -> bool:
    try:
        return bool(got == expected)  # both are plain literals: no user-defined __eq__ can run here
    except (RecursionError, MemoryError):
        return False


# Checked when a recipe is validated (rewards.registry.resolve_reward): no OS sandbox, no code rewards.
code_exec.preflight = check_sandbox  # type: ignore[attr-defined]
