"""Reward for model-written Python, graded by running test cases in the sandbox.

The solution and its tests run together in one :func:`rewards.sandbox.run_python`
call. Pass lines are tagged with a random nonce so ordinary output cannot be
mistaken for them; a solution that deliberately inspects its harness could
still forge them, so treat this as a training signal, not as an adversarial
grader.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewards._common import column, completion_text
from rewards.sandbox import run_python

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


def split_tests(tests: Any) -> list[str]:
    """One source string per test case.

    ``tests`` is a list of assert strings, the same as a JSON string, or one
    string of several statements (each top-level statement is one case).

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
    return [str(t) for t in tests]


def code_exec(
    completions: list[Any],
    tests: Any,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    **kwargs: Any,
) -> list[float]:
    """The fraction of ``tests`` that pass against the reply's code, run in the sandbox.

    ``tests`` is a dataset column: per row, a string of asserts or a list of
    assert strings (see :func:`split_tests`). The solution is executed as a
    module named ``solution`` (so its ``if __name__ == "__main__":`` block does
    not run), then each test runs in its namespace. Anything that stops the
    run (timeout, crash, memory, a solution that does not even load) scores
    0.0, as does a row without tests.

    >>> reply = "```python\\ndef square(x):\\n    return x * x\\n```"
    >>> code_exec([reply], tests=[["assert square(3) == 9", "assert square(-2) == 4", "assert square(0) == 1"]])
    [0.6666666666666666]
    """
    rows = column(tests, len(completions), "tests")
    jobs = [(extract_code(completion_text(c)), split_tests(t)) for c, t in zip(completions, rows, strict=True)]
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: _grade(*job, timeout_s=timeout_s, memory_mb=memory_mb), jobs))


def _grade(code: str, tests: list[str], *, timeout_s: float, memory_mb: int) -> float:
    if not tests:
        return 0.0
    nonce = secrets.token_hex(16)
    result = run_python(_harness(code, tests, nonce), timeout_s=timeout_s, memory_mb=memory_mb)
    if result.timed_out or result.killed_reason is not None:
        return 0.0
    lines = set(result.stdout.splitlines())
    if f"{nonce} DONE" not in lines:
        return 0.0
    passed = sum(f"{nonce} PASS {i}" in lines for i in range(len(tests)))
    return passed / len(tests)


def _harness(code: str, tests: list[str], nonce: str) -> str:
    # The report goes straight to fd 1 through a function bound before the
    # solution runs, so rebinding print or sys.stdout does not change it.
    return f"""\
import os as _os
_w = _os.write
_g = {{"__name__": "solution"}}
try:
    exec(compile({code!r}, "solution.py", "exec"), _g)
except BaseException:
    _os._exit(0)
for _i, _t in enumerate({tests!r}):
    try:
        exec(compile(_t, "test_%d" % _i, "exec"), _g)
    except BaseException:
        continue
    _w(1, ("\\n{nonce} PASS %d\\n" % _i).encode())
_w(1, b"\\n{nonce} DONE\\n")
"""
