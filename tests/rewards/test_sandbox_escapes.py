"""The escapes found against the old audit-hook-only mode (issue 12), run against the sandbox.

Each attack tries to read an owner-only secret file, change a canary file,
connect to a listener on 127.0.0.1 and leave a process running; the fixtures
check the canary and the listener on teardown. Every case runs with all
layers and with the OS layers alone, so the isolation is shown to hold even
where the audit hook is bypassed.
"""

from __future__ import annotations

import os
import random
import tempfile
import time

import pytest

from rewards.code import code_exec
from rewards.sandbox import run_python

CONFIGS = [pytest.param({}, id="all_layers"), pytest.param({"audit_hook": False}, id="os_layers_only")]


def payload(secret_path, canary, port, marker):
    """Python source that attempts every harm at once and reports what it got."""
    return f"""
import os, socket, subprocess
got = []
for read in (lambda: open({str(secret_path)!r}).read(), lambda: open('/proc/1/root' + {str(secret_path)!r}).read(),
             lambda: subprocess.run(['cat', {str(secret_path)!r}], capture_output=True, text=True).stdout):
    try:
        got.append(read())
    except BaseException as exc:
        got.append('refused ' + exc.__class__.__name__)
for harm in (lambda: os.unlink({str(canary)!r}), lambda: open({str(canary)!r}, 'w').write('pwned'),
             lambda: socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'pwned'),
             lambda: subprocess.Popen(['sleep', {marker!r}], start_new_session=True)):
    try:
        harm()
    except BaseException as exc:
        got.append('refused ' + exc.__class__.__name__)
print(got, flush=True)
"""


@pytest.fixture
def marker():
    """A `sleep` argument unique to this test, to find processes the attack left behind."""
    return f"{random.randrange(10**8, 10**9)}.5"


def assert_contained(result, secret, marker, assert_none_left):
    assert secret not in result.stdout and secret not in result.stderr, "the secret leaked"
    assert_none_left(marker.encode(), grace_s=0.0)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_plain_payload_is_contained(cfg, owner_only_secret, canary, listener_port, marker, assert_none_left):
    # The baseline: the same payload without any trick around it.
    path, secret = owner_only_secret
    result = run_python(payload(path, canary, listener_port, marker), **cfg)
    assert_contained(result, secret, marker, assert_none_left)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_builtin_overrides_change_nothing(cfg, owner_only_secret, canary, listener_port, marker,
                                                  assert_none_left):
    # The old hook called builtins (any, type) that the code can rebind.
    path, secret = owner_only_secret
    code = "import builtins\nbuiltins.any = lambda *a, **k: False\nbuiltins.all = lambda *a, **k: True\n"
    result = run_python(code + payload(path, canary, listener_port, marker), **cfg)
    assert_contained(result, secret, marker, assert_none_left)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_dir_fd_paths_reach_nothing(cfg, owner_only_secret, canary, assert_none_left):
    # A dir fd of the work dir, then relative paths the old hook resolved against the (changed) cwd.
    path, secret = owner_only_secret
    up = "../" * 20
    code = f"""
import os
os.makedirs('a/b/c')
fd = os.open('.', os.O_RDONLY)
os.chdir('a/b/c')
root = os.open('/', os.O_RDONLY)
for attempt in (lambda: os.read(os.open({up + str(path)[1:]!r}, os.O_RDONLY, dir_fd=fd), 100),
                lambda: os.read(os.open({str(path)[1:]!r}, os.O_RDONLY, dir_fd=root), 100),
                lambda: os.unlink({up + str(canary)[1:]!r}, dir_fd=fd),
                lambda: os.unlink({str(canary)[1:]!r}, dir_fd=root)):
    try:
        print(attempt())
    except BaseException as exc:
        print('refused', exc.__class__.__name__)
"""
    result = run_python(code, **cfg)
    assert secret not in result.stdout
    assert result.stdout.count("refused") == 4 or not result.ok


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_c_module_under_a_dotted_alias(cfg, owner_only_secret, canary, assert_none_left):
    # _ctypes loaded as "innocent._ctypes" (the old hook checked only the first dotted part), then libc calls.
    path, secret = owner_only_secret
    code = f"""
import glob, importlib.util, os, sys
dynload = os.path.join(os.path.dirname(os.__file__), 'lib-dynload')
spec = importlib.util.spec_from_file_location('innocent._ctypes', glob.glob(dynload + '/_ctypes.*.so')[0])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules['_ctypes'] = mod
init = os.path.join(os.path.dirname(os.__file__), 'ctypes', '__init__.py')
spec = importlib.util.spec_from_file_location('innocent.c', init, submodule_search_locations=[os.path.dirname(init)])
c = importlib.util.module_from_spec(spec)
sys.modules['innocent.c'] = c
spec.loader.exec_module(c)
print('LOADED', flush=True)
libc = c.CDLL(None)
print('unlink', libc.unlink({str(canary).encode()!r}))
fd = libc.open({str(path).encode()!r}, 0)
buf = c.create_string_buffer(200)
libc.read(fd, buf, 199)
print('read', fd, buf.value)
"""
    result = run_python(code, **cfg)
    assert secret not in result.stdout
    if cfg.get("audit_hook") is False:
        # Without the hook the module does load: only the OS layers stand between it and the host.
        assert "LOADED" in result.stdout and "unlink -1" in result.stdout and "read -1" in result.stdout


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("start", [
    "import _xxsubinterpreters as s\ns.run_string(s.create(), PAYLOAD)",
    "import _testcapi\n_testcapi.run_in_subinterp(PAYLOAD)",
], ids=["xxsubinterpreters", "testcapi"])
def test_sandbox_sub_interpreters_stay_inside(cfg, start, owner_only_secret, canary, listener_port, marker,
                                              assert_none_left):
    # A sub-interpreter has no audit hook: it read root-only files, ran shell commands, opened a TCP
    # connection and left a process behind in the old weak mode.
    path, secret = owner_only_secret
    code = f"PAYLOAD = {payload(path, canary, listener_port, marker)!r}\n" + start + "\nimport time\ntime.sleep(0.3)"
    result = run_python(code, **cfg)
    assert_contained(result, secret, marker, assert_none_left)
    if cfg.get("audit_hook") is False:
        # The payload really ran (its report is printed), so the OS layers were what held.
        assert "refused" in result.stdout, result.stderr


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_daemon_does_not_outlive_the_run(cfg, marker, assert_none_left):
    code = f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/usr/bin/sleep', ['sleep', {marker!r}])
    os._exit(0)
time.sleep(0.3)
print('parent done', flush=True)
"""
    result = run_python(code, **cfg)
    if cfg.get("audit_hook") is False:
        assert result.ok and "parent done" in result.stdout  # the daemon really started
    assert_none_left(marker.encode(), grace_s=0.0)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_daemon_of_a_timed_out_run_dies(cfg, marker, assert_none_left):
    code = f"""
try:
    import subprocess
    subprocess.Popen(['sleep', {marker!r}], start_new_session=True)
except PermissionError:  # the audit hook's refusal
    pass
while True:
    pass
"""
    result = run_python(code, timeout_s=1, **cfg)
    assert result.killed_reason == "timeout"
    assert_none_left(marker.encode(), grace_s=0.0)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_odd_text_never_raises(cfg):
    lone = "\ud800"
    assert not run_python(f"x = '{lone}'\nprint('ran')", **cfg).ok  # not UTF-8: a syntax error, not a crash
    result = run_python("import sys\nprint(input())\nsys.stdout.buffer.write(bytes(range(256)) * 100)\n"
                        "print('\\udc80')", stdin=f"in{lone}put", **cfg)
    assert "in\ufffd" in result.stdout and "put\n" in result.stdout and "\x00\x01" in result.stdout
    assert code_exec([f"```python\ndef f():\n    return '{lone}'\n```"], tests=[["assert f() == 1"]]) == [0.0]


DEEP = "import os\nfor _ in range({depth}):\n    os.mkdir('d')\n    os.chdir('d')\nprint('deep')"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sandbox_deep_directories_never_raise(cfg):
    # Deeper than Python's recursion limit; the audit hook resolves every path, so it gets fewer levels.
    result = run_python(DEEP.format(depth=1200 if cfg.get("audit_hook", True) else 3000), **cfg)
    assert result.ok and result.stdout == "deep\n"


@pytest.mark.filterwarnings("ignore:sandbox. running untrusted code in the WEAK mode")
def test_sandbox_weak_mode_cleans_up_deep_directories(monkeypatch):
    # The weak mode works in a host temp dir; its cleanup used to hit RecursionError on deep trees.
    monkeypatch.setenv("POSTTRAIN_SANDBOX", "weak")
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("posttrain-sandbox-")}
    start = time.monotonic()
    result = run_python(DEEP.format(depth=1100), audit_hook=False)  # rmtree recursed once per level
    assert result.stdout == "deep\n" and "bwrap" not in result.layers
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("posttrain-sandbox-")}
    assert after <= before and time.monotonic() - start < 20
