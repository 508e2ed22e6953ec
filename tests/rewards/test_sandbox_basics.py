from __future__ import annotations

import pytest

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
    layers = set(sandbox_layers())
    assert {"bwrap", "netns", "pidns", "private_root", "rlimits", "no_new_privs", "hook"} <= layers
    assert "hook" not in run_python("pass", audit_hook=False).layers


def test_sandbox_gets_stdin_and_arguments():
    result = run_python("import sys\nprint(sys.argv[1:], sys.stdin.read().upper())", stdin="abc", args=("x", "y"))
    assert result.stdout == "['x', 'y'] ABC\n"


def test_sandbox_sees_only_its_own_root():
    code = "import os\nprint(sorted(os.listdir('/')), os.getcwd(), os.path.exists('/proc/self'), os.path.exists('/home'))"
    result = run_python(code, audit_hook=False)
    assert result.stdout.split("]")[0] + "]" == str(sorted(result.stdout.split("]")[0].strip("[").replace("'", "")
                                                          .split(", ")))
    assert "'sandbox'" in result.stdout and "'root'" not in result.stdout and "'home'" not in result.stdout
    assert result.stdout.endswith("/sandbox False False\n")


def test_sandbox_root_filesystem_is_read_only():
    code = """
for path in ('/x', '/usr/x', '/etc/x', '/dev/x', '/dev/shm/x'):
    try:
        open(path, 'w')
        print('wrote', path)
    except OSError as exc:
        print('refused', exc.errno)
open('/tmp/ok', 'w').write('fine')  # /tmp is the sandbox's own tmpfs
print(open('/sandbox/ok').read())
"""
    result = run_python(code, audit_hook=False)
    assert "wrote" not in result.stdout and result.stdout.count("refused") == 5
    assert result.stdout.endswith("fine\n")


@pytest.fixture
def weak(monkeypatch):
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "weak")


@pytest.mark.filterwarnings("ignore:sandbox. running untrusted code in the WEAK mode")
def test_sandbox_weak_hook_refuses_directory_fds_and_builtin_reimports(weak):
    code = """
import os, sys
stdlib = os.path.dirname(os.__file__)
for attempt in (lambda: os.open(stdlib, os.O_RDONLY),
                lambda: os.open('.', os.O_RDONLY),
                lambda: (sys.modules.pop('posix'), __import__('posix'))):
    try:
        attempt()
        print('allowed')
    except PermissionError:
        print('refused')
print(len(open(os.path.join(stdlib, 'os.py')).read()) > 0)  # reading the stdlib is fine
"""
    result = run_python(code)
    assert "bwrap" not in result.layers
    assert result.stdout.split() == ["refused", "refused", "refused", "True"], result.stderr


@pytest.mark.filterwarnings("ignore:sandbox. running untrusted code in the WEAK mode")
def test_sandbox_weak_hook_survives_rebound_builtins_and_aliases(weak, canary):
    code = f"""
import builtins, importlib
builtins.any = lambda *a, **k: False
builtins.type = lambda *a, **k: str
for attempt in (lambda: open({str(canary)!r}, 'w'), lambda: importlib.import_module('_xxsubinterpreters'),
                lambda: __import__('encodings._ctypes')):
    try:
        attempt()
        print('allowed')
    except BaseException as exc:
        print('refused' if exc.__class__ is PermissionError else exc.__class__.__name__)
"""
    assert run_python(code).stdout.split() == ["refused", "refused", "refused"]
