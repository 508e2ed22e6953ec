from __future__ import annotations

import pytest

import rewards.sandbox as sandbox
from rewards.sandbox import SandboxResult, run_python, sandbox_layers


def test_sandbox_clean_run():
    result = run_python("import sys\nprint('héllo')\nprint('warn', file=sys.stderr)")
    assert result.ok and result.returncode == 0 and not result.timed_out and result.killed_reason is None
    assert result.stdout == "héllo\n" and result.stderr == "warn\n"
    assert isinstance(result, SandboxResult)


def test_sandbox_nonzero_exit_and_traceback():
    result = run_python("raise ValueError('nope')")
    assert not result.ok and result.returncode == 1 and "ValueError: nope" in result.stderr
    assert result.killed_reason is None


def test_sandbox_work_dir_is_writable_and_private():
    result = run_python("open('a.txt', 'w').write('x')\nimport os\nprint(sorted(os.listdir('.')))")
    assert result.ok and result.stdout.strip() == "['a.txt', 'main.py']"


def test_sandbox_standard_library_works():
    code = ("import json, re, math, collections, itertools, tempfile, random, dataclasses, typing, functools,"
            " heapq, bisect, string, decimal, fractions, statistics, datetime, hashlib, copy, textwrap, unittest\n"
            "print(json.dumps({'ok': math.pi > 3}))")
    assert run_python(code).stdout.strip() == '{"ok": true}'


def test_sandbox_reports_its_layers():
    layers = sandbox_layers()
    assert {"hook", "rlimits"} <= set(layers)
    assert "hook" not in run_python("pass", audit_hook=False).layers
    assert "private_root" not in run_python("pass", namespaces=False).layers


def test_sandbox_falls_back_when_namespaces_break(monkeypatch):
    if "private_root" not in sandbox_layers():
        pytest.skip("no namespace layer on this machine")
    # A bind list that makes the private root fail half-way through.
    monkeypatch.setattr(sandbox, "_binds", lambda: ["/usr", "/usr"])
    monkeypatch.setattr(sandbox, "_namespaces_broken", False)
    with pytest.warns(RuntimeWarning, match="namespace layer unavailable"):
        result = run_python("print(2 + 2)")
    assert result.ok and result.stdout == "4\n"
    assert "private_root" not in result.layers and "hook" in result.layers
    assert sandbox._namespaces_broken  # later calls skip the broken layer


def test_sandbox_hook_refuses_directory_fds_and_builtin_reimports():
    code = """
import os, sys
stdlib = os.path.dirname(os.__file__)
for attempt in (lambda: os.open(stdlib, os.O_RDONLY),
                lambda: (sys.modules.pop('posix'), __import__('posix'))):
    try:
        attempt()
        print('allowed')
    except PermissionError:
        print('refused')
print(len(open(os.path.join(stdlib, 'os.py')).read()) > 0)  # reading the stdlib is fine
"""
    result = run_python(code, namespaces=False)
    assert result.stdout.split() == ["refused", "refused", "True"], result.stderr
