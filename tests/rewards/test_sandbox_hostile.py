"""Hostile completions against the sandbox: every case must be contained.

Each case runs under every layer configuration this machine supports (all
layers; the audit hook alone with rlimits; the OS layers alone), so a layer
that silently stops working is caught even though the others still hold.

The payloads are written so that a *broken* sandbox still could not hurt the
machine: the fork bomb tops out at 2**7 processes that exit within a second,
the memory hog at 1 GiB, loops end on their own, the file attacks aim at
canaries this module creates, the signal attack at a ``sleep`` it starts, and
the repository file is only opened for appending, never written.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from rewards.code import code_exec
from rewards.sandbox import run_python

REPO_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"
SECRET_LINE = 'name = "posttrain"'  # a line of REPO_FILE that must not leak

# The sandbox with every layer, and its OS layers alone (no audit hook), so
# that the OS isolation is shown to hold by itself. The weak mode is not a
# security boundary and is not expected to pass this suite.
CONFIGS = [pytest.param({}, id="all_layers"), pytest.param({"audit_hook": False}, id="os_layers_only")]


@pytest.fixture(scope="module", autouse=True)
def repository_untouched():
    before = hashlib.sha256(REPO_FILE.read_bytes()).hexdigest(), REPO_FILE.stat().st_mtime_ns
    yield
    after = hashlib.sha256(REPO_FILE.read_bytes()).hexdigest(), REPO_FILE.stat().st_mtime_ns
    assert before == after, "the repository changed during the hostile suite"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_fork_bomb_is_bounded(cfg, assert_none_left):
    # Each surviving process forks again: 2**7 processes if nothing stops it.
    bomb = """
import os, time
for _ in range(7):
    try:
        pid = os.fork()
    except BaseException as exc:
        print("FORK_REFUSED", type(exc).__name__, flush=True)
        break
    if pid == 0:
        os.write(1, b"F\\n")
time.sleep(0.5)
"""
    start = time.monotonic()
    result = run_python(bomb, max_processes=8, timeout_s=5, **cfg)
    assert time.monotonic() - start < 5
    assert "FORK_REFUSED" in result.stdout
    assert result.stdout.count("F\n") <= 8
    assert_none_left()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_infinite_loop_times_out(cfg, assert_none_left):
    start = time.monotonic()
    result = run_python("import time\nend = time.time() + 60\nwhile time.time() < end: pass", timeout_s=1, **cfg)
    assert result.timed_out and result.killed_reason == "timeout" and not result.ok
    assert time.monotonic() - start < 3
    assert_none_left()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_sleeping_children_are_reaped(cfg, assert_none_left):
    # A child that detaches into its own session must not outlive the run.
    code = """
import os, time
try:
    if os.fork() == 0:
        os.setsid()
        time.sleep(30)
except PermissionError:
    pass
"""
    result = run_python(code, timeout_s=2, **cfg)
    assert not result.timed_out
    assert_none_left()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_20gb_allocation_fails(cfg):
    result = run_python("x = bytearray(20 * 2**30)\nprint('ALLOCATED')", memory_mb=256, **cfg)
    assert not result.ok and "ALLOCATED" not in result.stdout
    assert result.killed_reason == "memory"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_growing_list_hits_memory_limit(cfg):
    code = "chunks = []\nfor _ in range(100):\n    chunks.append(b'x' * (10 * 2**20))\nprint('GREW')"
    result = run_python(code, memory_mb=256, **cfg)
    assert not result.ok and "GREW" not in result.stdout
    assert result.killed_reason == "memory"


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize(
    "attack",
    [
        "import os; os.remove({file!r})",
        "open({file!r}, 'w').write('pwned')",
        "open({file!r}, 'a').write('pwned')",
        "import os; os.rename({file!r}, {file!r} + '.moved')",
        "import shutil; shutil.rmtree({folder!r})",
        "import os; os.chmod({file!r}, 0)",
        "open({folder!r} + '/new.txt', 'w').write('pwned')",
        "import os; os.symlink('/etc/passwd', {folder!r} + '/link')",
        "import os; assert os.system('rm {file} && echo pwned > {folder}/new.txt') == 0",
        "import subprocess; subprocess.run(['rm', {file!r}], check=True)",
        "import ctypes; assert ctypes.CDLL(None).unlink({file!r}.encode()) == 0",
        # a path object that shows the audit hook one path and the system call another
        "class P:\n    n = 0\n    def __fspath__(self):\n        P.n += 1\n"
        "        return {file!r} if P.n % 2 else 'harmless.txt'\nopen(P(), 'w').write('pwned')",
        "import os; fd = os.open({folder!r}, os.O_RDONLY); os.remove('canary.txt', dir_fd=fd)",
        "import os; os.chdir({folder!r}); os.remove('canary.txt')",
    ],
    ids=["remove", "overwrite", "append", "rename", "rmtree", "chmod", "create", "symlink",
         "os_system", "subprocess", "ctypes", "fspath_swap", "dir_fd", "chdir"],
)
def test_sandbox_files_outside_are_untouchable(cfg, attack, canary):
    code = attack.format(file=str(canary), folder=str(canary.parent)) + "\nprint('DONE')"
    result = run_python(code, **cfg)
    # Every attack raises when it fails, so "DONE" would mean it got through.
    assert "DONE" not in result.stdout and not result.ok
    # The canary fixture asserts on teardown that nothing changed.


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_cannot_reach_the_network(cfg, listener_port):
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {listener_port}), timeout=1)\ns.sendall(b'pwned')"
    result = run_python(code, **cfg)
    assert not result.ok  # the listener fixture fails on teardown if a connection arrived


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_cannot_read_the_project(cfg):
    assert SECRET_LINE in REPO_FILE.read_text()
    code = f"""
import os
for attempt in (lambda: open({str(REPO_FILE)!r}).read(),
                lambda: str(os.listdir({str(REPO_FILE.parent)!r})),
                lambda: open('/proc/1/root' + {str(REPO_FILE)!r}).read()):
    try:
        print(attempt())
    except OSError as exc:
        print('refused', type(exc).__name__)
"""
    result = run_python(code, **cfg)
    assert SECRET_LINE not in result.stdout and "pyproject.toml" not in result.stdout
    assert result.stdout.count("refused") == 3


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_cannot_open_repository_files_for_writing(cfg):
    # Opening for append (without writing) proves the open itself is refused.
    result = run_python(f"open({str(REPO_FILE)!r}, 'a')\nprint('OPENED')", **cfg)
    assert "OPENED" not in result.stdout and not result.ok


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_cannot_signal_other_processes(cfg):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        result = run_python(f"import os, signal\nos.kill({victim.pid}, signal.SIGKILL)\nprint('SENT')", **cfg)
        assert "SENT" not in result.stdout
        time.sleep(0.1)
        assert victim.poll() is None, "the sandbox killed a process outside it"
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_output_flood_is_capped(cfg):
    code = "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 2**20)"
    result = run_python(code, max_output_bytes=100_000, disk_mb=8, **cfg)
    assert len(result.stdout) <= 100_000
    assert not result.ok and result.killed_reason == "file_size"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_disk_filling_hits_the_quota(cfg):
    code = "for i in range(64):\n    open(f'f{i}', 'wb').write(b'x' * 2**20)\nprint('FILLED')"
    result = run_python(code, disk_mb=8, **cfg)
    assert "FILLED" not in result.stdout and not result.ok


def test_sandbox_hostile_completions_earn_nothing(canary, assert_none_left):
    """The same attacks as model replies graded by code_exec: every one scores 0."""
    attacks = [
        "import os\nfor _ in range(7):\n    os.fork()",
        "import time\nend = time.time() + 60\nwhile time.time() < end: pass",
        "x = bytearray(20 * 2**30)",
        f"import os\nos.remove({str(canary)!r})",
        f"import shutil\nshutil.rmtree({str(canary.parent)!r})",
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
        f"print(open({str(REPO_FILE)!r}).read())",
        f"import os\nassert os.system('rm -f {canary}') == 0",
    ]
    completions = [f"```python\n{code}\n```" for code in attacks]
    scores = code_exec(completions, tests=[["assert True"]] * len(attacks), timeout_s=1)
    assert scores == [0.0] * len(attacks)
    assert_none_left()


def test_sandbox_work_dirs_are_removed():
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("posttrain-sandbox-")}
    run_python("open('scratch.txt', 'w').write('x')")
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("posttrain-sandbox-")}
    assert after <= before


def test_sandbox_canary_dir_really_is_world_writable(canary):
    # Guards the premise of the file tests: permissions alone would not save the canary.
    assert canary.parent.stat().st_mode & stat.S_IWOTH and canary.stat().st_mode & stat.S_IWOTH
