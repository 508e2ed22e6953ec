"""Run untrusted, model-written Python in a throw-away sandbox.

    >>> run_python("print(6 * 7)").stdout
    '42\\n'

Threat model
------------
The code comes from a policy being trained with RL, which will happily learn
any trick that raises its reward; it may also be plain buggy (infinite loops,
runaway allocation). The sandbox must keep such code from harming the host,
the repository, other sandboxes or the training process, and must always
return. It is *not* designed to hold a determined human attacker with kernel
exploits; run it in a container or VM if that matters to you.

Layers (defence in depth; each is enough for most hostile cases, and the
hostile-completion tests run every case three ways: all layers, without
namespaces, and without the audit hook):

1. Process control (always): a fresh session / process group, killed as a
   whole on the wall-clock timeout; the child dies if its parent dies
   (``PR_SET_PDEATHSIG``); stdin is ``/dev/null``; stdout and stderr go to
   files whose size ``RLIMIT_FSIZE`` caps, so a print flood cannot exhaust the
   caller's memory.
2. Resource limits (always): ``RLIMIT_AS``/``RLIMIT_DATA`` (memory),
   ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE=0`` and
   ``RLIMIT_NPROC`` (ignored for root, hence layer 3).
3. Privilege drop (when the caller is root): the child becomes ``nobody``
   before running anything, so file permissions apply again, RLIMIT_NPROC
   counts and other users' processes cannot be signalled. If ``nobody``
   cannot reach the interpreter (e.g. pyenv under a 0700 ``/root``) and the
   namespace layer is missing, it keeps one capability, CAP_DAC_READ_SEARCH
   (layer ``privdrop_readall``): it can read, but not write, anything, so
   the audit hook alone guards reads there. ``PR_SET_NO_NEW_PRIVS`` makes
   setuid binaries useless in every mode.
4. Namespaces: new mount, network, pid, IPC and UTS namespaces (a non-root
   caller also gets a user namespace, where the kernel allows unprivileged
   ones; that path is not exercised on the root-only CI machines). The child sees
   a private root made of read-only, nosuid binds of the system and
   interpreter directories plus a size-capped tmpfs ``/sandbox`` as its only
   writable place: the repository, ``/tmp`` and ``$HOME`` do not exist for
   it. The network namespace has only a downed loopback. The child is pid 1
   of its pid namespace, so when it dies every process it started dies too.
   If the kernel refuses ``unshare`` the sandbox falls back (with a one-time
   warning) to layers 1, 2, 3 and 5.
5. Audit hook (``sys.addaudithook``, on by default): refuses fork/exec/spawn,
   sockets, signals, ctypes, opening files for writing outside the work
   directory, reading anything but the work directory and regular files of
   the standard library, directory handles outside the work directory,
   path-likes other than ``str``/``bytes``/``pathlib`` (a custom
   ``__fspath__`` could show the hook one path and the system call another),
   re-importing ``posix``/``_imp``, and rebinding the hook's own internals.
   Audit hooks are not a security boundary on their own (CPython has no
   audit events for e.g. ``os.mkfifo``/``os.mknod``, and a clever pure-Python
   escape may exist); here they are the layer that still holds reads when the
   namespace layer is unavailable, e.g. inside a container that forbids
   ``unshare``.

What it does not stop: CPU contention (the child shares the cores until its
CPU limit), kernel exploits, side channels, and reward hacking by code that
reads or fakes its own test harness (see :mod:`rewards.code`). Only the
standard library is importable inside (``python -I -S``).

``sandbox_layers()`` reports which layers this machine actually provides.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["SandboxResult", "run_python", "sandbox_layers"]

_CHILD_SOURCE = Path(__file__).with_name("_sandbox_child.py").read_text()
_SETUP_FAILED = 117  # keep in sync with _sandbox_child.SETUP_FAILED
_NOBODY = 65534
_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
_namespaces_broken = False


@dataclass(frozen=True)
class SandboxResult:
    """What came out of one sandboxed run.

    ``ok`` is true only for a clean exit (status 0, no timeout, no kill).
    ``killed_reason`` says why the run was cut short: ``"timeout"``,
    ``"cpu_time"``, ``"file_size"``, ``"memory"``, ``"killed"``, ``"signal N"``
    or ``"sandbox_error"``; ``None`` otherwise. ``layers`` lists the isolation
    layers that were in force (see the module docstring).
    """

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    killed_reason: str | None = None
    layers: tuple[str, ...] = ()


def run_python(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_processes: int = 16,
    disk_mb: int = 16,
    max_output_bytes: int = 1_000_000,
    namespaces: bool = True,
    audit_hook: bool = True,
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox and wait for it.

    ``timeout_s`` is wall-clock; ``memory_mb`` bounds the address space;
    ``max_processes`` bounds processes (only meaningful without the audit
    hook, which forbids starting any); ``disk_mb`` bounds the writable work
    directory and each written file; stdout/stderr are truncated to
    ``max_output_bytes``. ``namespaces`` and ``audit_hook`` switch layers off,
    for tests and for machines where a layer misbehaves.

    >>> r = run_python("import sys; sys.exit(3)")
    >>> (r.ok, r.returncode)
    (False, 3)
    >>> run_python("while True: pass", timeout_s=0.5).killed_reason
    'timeout'
    """
    global _namespaces_broken
    use_ns = namespaces and not _namespaces_broken
    result = _run_once(code, timeout_s, memory_mb, max_processes, disk_mb, max_output_bytes, use_ns, audit_hook)
    if use_ns and result.returncode == _SETUP_FAILED and not result.layers:
        _namespaces_broken = True
        warnings.warn(
            f"sandbox: namespace layer unavailable ({result.stderr.strip()}); "
            "continuing with rlimits, privilege drop and the audit hook",
            RuntimeWarning,
            stacklevel=2,
        )
        result = _run_once(code, timeout_s, memory_mb, max_processes, disk_mb, max_output_bytes, False, audit_hook)
    return result


@cache
def sandbox_layers() -> tuple[str, ...]:
    """The isolation layers a default :func:`run_python` call gets on this machine."""
    return run_python("pass").layers


def _run_once(code, timeout_s, memory_mb, max_processes, disk_mb, max_output_bytes, namespaces, hook):
    workdir = tempfile.mkdtemp(prefix="posttrain-sandbox-")
    outdir = tempfile.mkdtemp(prefix="posttrain-sandbox-out-")
    status_r, status_w = os.pipe()
    try:
        Path(workdir, "main.py").write_text(code)
        if os.geteuid() == 0:
            # The child may run as nobody (privilege drop); it needs its work dir.
            for path in (workdir, os.path.join(workdir, "main.py")):
                os.chown(path, _NOBODY, _NOBODY)
        cfg = {
            "workdir": workdir,
            "status_fd": status_w,
            "namespaces": namespaces,
            "hook": hook,
            "memory_mb": memory_mb,
            "cpu_s": int(timeout_s) + 1,
            "fsize_bytes": max(disk_mb * 1024 * 1024, max_output_bytes),
            "disk_mb": disk_mb,
            "max_processes": max_processes,
            "binds": _binds(),
            "nobody_can_run": _nobody_can_run(),
            "env": _ENV,
            "run_argv": [*_python_argv(), "run"],
        }
        with open(os.path.join(outdir, "out"), "w+b") as out, open(os.path.join(outdir, "err"), "w+b") as err:
            rc, timed_out = _spawn_and_wait([*_python_argv(), "launch", json.dumps(cfg)], workdir, out, err,
                                            status_w, timeout_s)
            os.close(status_w)
            status_w = -1
            stdout, stderr = _read_capped(out, max_output_bytes), _read_capped(err, max_output_bytes)
        layers = _read_layers(status_r)
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        _remove_tree(workdir)
        _remove_tree(outdir)
    reason = _killed_reason(rc, timed_out, stderr)
    ok = rc == 0 and reason is None
    return SandboxResult(ok, rc, stdout, stderr, timed_out, reason, layers)


def _spawn_and_wait(argv, workdir, out, err, status_w, timeout_s):
    import subprocess

    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=_ENV,
        start_new_session=True, close_fds=True, pass_fds=(status_w,),
    )
    expired = threading.Event()

    def kill_group():
        expired.set()
        _killpg(proc.pid)

    timer = threading.Timer(timeout_s, kill_group)
    timer.start()
    try:
        # Wait without reaping: while the leader is an unreaped zombie its
        # process-group id cannot be reused, so the final killpg cannot hit a
        # stranger, yet it still sweeps up any stragglers the child left.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    finally:
        timer.cancel()
        _killpg(proc.pid)
        rc = proc.wait()
    return rc, expired.is_set()


def _killpg(pgid):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_capped(fh, limit):
    fh.seek(0)
    return fh.read(limit).decode("utf-8", errors="replace")


def _read_layers(fd):
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 4096)
    except BlockingIOError:
        return ()
    try:
        return tuple(json.loads(data))
    except ValueError:
        return ()


def _killed_reason(rc, timed_out, stderr):
    if timed_out:
        return "timeout"
    if rc == _SETUP_FAILED and "sandbox setup failed" in stderr:
        return "sandbox_error"
    if rc is not None and rc < 0:
        sig = -rc
        named = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size", signal.SIGKILL: "killed"}
        return named.get(sig, f"signal {sig}")
    tail = stderr[-2000:]
    if rc and "MemoryError" in tail:
        return "memory"
    if rc and "[Errno 27] File too large" in tail:
        return "file_size"  # Python ignores SIGXFSZ, so the limit surfaces as EFBIG
    return None


def _remove_tree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@cache
def _python_argv() -> tuple[str, ...]:
    # The base interpreter, not a venv shim: the child runs with -I -S and
    # needs nothing but the standard library.
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return (exe, "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE)


@cache
def _binds() -> list[str]:
    """System paths the private root exposes, read-only (devices read-write)."""
    exe = _python_argv()[0]
    wanted = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache",
              os.path.realpath(sys.base_prefix), os.path.dirname(exe)]
    binds: list[str] = []
    for path in wanted:
        if os.path.lexists(path) and not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    return [*binds, "/dev/null", "/dev/zero", "/dev/urandom"]


@cache
def _nobody_can_run() -> bool:
    """Whether ``nobody`` can reach the interpreter and its standard library."""
    exe = _python_argv()[0]
    stdlib = os.path.join(os.path.dirname(os.__file__), "os.py")
    for target in (exe, stdlib):
        path = Path(target)
        for parent in path.parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
    return True
