"""Run untrusted, model-written Python in a throw-away OS sandbox, or refuse to.

    >>> run_python("print(6 * 7)").stdout
    '42\\n'
    >>> run_python("print(input()[::-1])", stdin="olleh").stdout
    'hello\\n'

Threat model
------------
The code comes from a policy being trained with RL, which will happily learn
any trick that raises its reward; it may also be plain buggy (infinite loops,
runaway allocation, fork bombs, floods of output). The sandbox must keep such
code from reading or changing anything of the host (files, the repository,
other processes, the network), from outliving its run, and from making the
caller raise: every run returns a :class:`SandboxResult`. It is *not* designed
to hold an attacker with kernel exploits; use a VM if that matters to you.
Grading must not trust the child either: see :mod:`rewards.code`, whose
graders sit in the parent and never show the child what they expect.

The sandbox (``POSTTRAIN_SANDBOX=bwrap``, the default)
------------------------------------------------------
1. bubblewrap (``bwrap``): new user, mount, pid, network, IPC, UTS and cgroup
   namespaces; no nested user namespaces; no network devices at all; a
   private root of read-only binds (``/usr``, the ``/lib*``/``/bin`` links,
   ``/etc/ld.so.cache``, the interpreter's prefix) plus a minimal ``/dev``
   and a size-capped tmpfs ``/sandbox`` (also ``/tmp``), the only writable
   place. The code, its stdin and its arguments are the only things handed in;
   ``/proc``, ``$HOME``, the repository and ``/tmp`` of the host do not exist
   inside. ``--die-with-parent`` and the pid namespace mean every process the
   code starts dies when its run ends, daemons included.
2. Privilege drop: a root caller's launcher becomes ``nobody`` before
   starting bubblewrap (so file permissions and ``RLIMIT_NPROC`` apply, and
   the sandbox maps to an unprivileged uid outside); ``no_new_privs``.
3. Resource limits: ``RLIMIT_AS``/``RLIMIT_DATA`` (memory), ``RLIMIT_CPU``,
   ``RLIMIT_FSIZE`` (also caps stdout/stderr, which go to files),
   ``RLIMIT_NPROC``, ``RLIMIT_NOFILE``, no core files; a wall-clock timeout
   kills the whole process group.
4. The audit hook (defence in depth only, on by default): refuses fork/exec,
   sockets, ctypes, signals and file access outside ``/sandbox``.

If bubblewrap is missing or cannot create its namespaces, :func:`run_python`
raises :class:`SandboxUnavailable` with the reason and the opt-in below; it
never downgrades silently.

The weak mode (``POSTTRAIN_SANDBOX=weak`` or ``allow_weak=True``)
-----------------------------------------------------------------
Layers 2-4 only, in a host temp directory. The audit hook is not a security
boundary: code has escaped it (sub-interpreters, monkeypatched internals of
``os.path``, C modules under aliases). Use it only for trusted or throw-away
machines; ``sandbox_layers()`` says which layers a run gets.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rewards._isolation import (
    SandboxUnavailable,
    base_python,
    bwrap_argv,
    bwrap_binary,
    requested_mode,
    sandbox_python,
    sandbox_user_can_run,
    unavailable_message,
)
from rewards._process import (
    PidNamespaceWatch,
    memfd,
    read_capped,
    read_nonblocking,
    remove_tree,
    spawn_and_wait,
)

__all__ = ["SandboxResult", "SandboxUnavailable", "check_sandbox", "run_python", "sandbox_layers"]

_CHILD_SOURCE = Path(__file__).with_name("_sandbox_child.py").read_text()
_SETUP_FAILED = 117  # keep in sync with _sandbox_child.SETUP_FAILED
_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
_BWRAP_LAYERS = ("bwrap", "userns", "netns", "pidns", "ipcns", "private_root", "tmpfs_quota")
_weak_warned = False
_BWRAP_WORKS: set[tuple[str, str]] = set()  # (bwrap, python) pairs whose trial run worked


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


def check_sandbox(*, allow_weak: bool = False) -> str:
    """The mode untrusted code will run in here (``"bwrap"`` or ``"weak"``), or raise.

    Raises :class:`SandboxUnavailable` (with the reason and the opt-in) when
    bubblewrap cannot isolate code on this machine and the weak mode was
    neither set (``POSTTRAIN_SANDBOX=weak``) nor allowed (``allow_weak``).
    Call it before training so that a missing sandbox stops a run early.
    """
    if requested_mode() == "weak":
        return _warn_weak("POSTTRAIN_SANDBOX=weak")
    try:
        problem = _bwrap_problem(bwrap_binary(), sandbox_python())
        if problem:
            raise SandboxUnavailable(unavailable_message(problem))
    except SandboxUnavailable:
        if allow_weak:
            return _warn_weak("allow_weak_sandbox=True and no bubblewrap")
        raise
    return "bwrap"


def run_python(
    code: str,
    *,
    stdin: str = "",
    args: tuple[str, ...] = (),
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_processes: int = 16,
    disk_mb: int = 16,
    max_output_bytes: int = 1_000_000,
    audit_hook: bool = True,
    allow_weak: bool = False,
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox, feeding it ``stdin`` and ``args``.

    ``timeout_s`` is wall-clock; ``memory_mb`` bounds each process's address
    space; ``max_processes`` bounds processes; ``disk_mb`` bounds the writable
    ``/sandbox``; stdout/stderr are truncated to ``max_output_bytes``.
    ``audit_hook=False`` leaves the OS layers alone (for tests). Raises
    :class:`SandboxUnavailable` only when no sandbox may run (see
    :func:`check_sandbox`); anything the code does comes back as a result.

    >>> r = run_python("import sys; sys.exit(3)")
    >>> (r.ok, r.returncode)
    (False, 3)
    >>> run_python("while True: pass", timeout_s=0.5).killed_reason
    'timeout'
    """
    mode = check_sandbox(allow_weak=allow_weak)
    limits = {"timeout_s": timeout_s, "memory_mb": memory_mb, "max_processes": max_processes,
              "disk_mb": disk_mb, "max_output_bytes": max_output_bytes}
    try:
        if mode == "bwrap":
            return _run_bwrap(bwrap_binary(), sandbox_python(), code, stdin, args, audit_hook, limits)
        return _run_weak(code, stdin, args, audit_hook, limits)
    except Exception as exc:  # the host failed, not the code; the caller must not raise
        return SandboxResult(False, None, "", f"sandbox error: {type(exc).__name__}: {exc}", False,
                             "sandbox_error", ())


@cache
def sandbox_layers() -> tuple[str, ...]:
    """The isolation layers a default :func:`run_python` call gets on this machine."""
    return run_python("pass").layers


def _warn_weak(why: str) -> str:
    global _weak_warned
    if not _weak_warned:
        _weak_warned = True
        warnings.warn(f"sandbox: running untrusted code in the WEAK mode ({why}): no OS isolation, "
                      "only rlimits, privilege drop and an audit hook", RuntimeWarning, stacklevel=3)
    return "weak"


def _bwrap_problem(bwrap: str, python: str) -> str | None:
    """Why bubblewrap cannot run code here, or ``None`` when a trial run works (remembered; failures are retried)."""
    if (bwrap, python) in _BWRAP_WORKS:
        return None
    limits = {"timeout_s": 10.0, "memory_mb": 512, "max_processes": 16, "disk_mb": 1, "max_output_bytes": 10_000}
    try:
        result = _run_bwrap(bwrap, python, "print('sandbox ok')", "", (), True, limits)
    except Exception as exc:  # any failure of the trial is a reason to refuse
        return f"{bwrap} could not start a sandbox ({type(exc).__name__}: {exc})"
    if result.stdout == "sandbox ok\n":
        _BWRAP_WORKS.add((bwrap, python))
        return None
    detail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return f"{bwrap} could not start a sandbox ({detail})"


def _run_bwrap(bwrap, python, code, stdin, args, hook, limits):
    run_cfg = json.dumps({"hook": hook, "args": list(args)})
    with memfd("main.py", _encode(code)) as code_fd:
        info_r, info_w = os.pipe()
        watch = PidNamespaceWatch(info_r, info_w)
        argv = [*bwrap_argv(bwrap, python, disk_mb=limits["disk_mb"], code_fd=code_fd, info_fd=info_w),
                python, "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE, "run", run_cfg]
        try:
            result = _launch(argv, None, stdin, (code_fd, info_w), limits, keep_read=False, watch=watch)
        finally:
            watch.close()
    if not watch.started and result.killed_reason is None:
        # bubblewrap itself failed before running anything (its message is on stderr)
        return SandboxResult(False, result.returncode, result.stdout, result.stderr, False, "sandbox_error", ())
    layers = tuple(sorted({*_BWRAP_LAYERS, *result.layers} | ({"hook"} if hook else set())))
    return SandboxResult(result.ok, result.returncode, result.stdout, result.stderr, result.timed_out,
                         result.killed_reason, layers)


def _run_weak(code, stdin, args, hook, limits):
    workdir = tempfile.mkdtemp(prefix="posttrain-sandbox-")
    try:
        Path(workdir, "main.py").write_bytes(_encode(code))
        python = base_python()
        keep_read = os.geteuid() == 0 and not sandbox_user_can_run(python)
        if os.geteuid() == 0:
            os.chown(workdir, 65534, 65534)  # the child runs as nobody and needs its work dir
        argv = [python, "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE, "run",
                json.dumps({"hook": hook, "args": list(args)})]
        result = _launch(argv, workdir, stdin, (), limits, keep_read=keep_read)
    finally:
        remove_tree(workdir)
    layers = tuple(sorted(set(result.layers) | ({"hook"} if hook else set())))
    return SandboxResult(result.ok, result.returncode, result.stdout, result.stderr, result.timed_out,
                         result.killed_reason, layers)


def _launch(argv, cwd, stdin, pass_fds, limits, *, keep_read, watch=None):
    """Start the launcher (privilege drop + rlimits, then exec ``argv``) and wait for it."""
    timeout_s, max_out = limits["timeout_s"], limits["max_output_bytes"]
    status_r, status_w = os.pipe()
    try:
        cfg = {"status_fd": status_w, "argv": argv, "env": _ENV, "keep_read": keep_read,
               "memory_mb": limits["memory_mb"], "cpu_s": int(timeout_s) + 1,
               "fsize_bytes": max(limits["disk_mb"] * 1024 * 1024, max_out),
               "max_processes": limits["max_processes"]}
        launcher = [base_python(), "-I", "-S", "-B", "-X", "utf8", "-c", _CHILD_SOURCE, "launch", json.dumps(cfg)]
        with memfd("stdin", _encode(stdin)) as stdin_fd, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err:
            rc, timed_out = spawn_and_wait(launcher, cwd, _ENV, stdin_fd, out, err, (status_w, *pass_fds), timeout_s,
                                            watch)
            os.close(status_w)
            status_w = -1
            stdout, stderr = read_capped(out, max_out), read_capped(err, max_out)
        layers = _parse_layers(read_nonblocking(status_r))
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
    reason = _killed_reason(rc, timed_out, stderr)
    return SandboxResult(rc == 0 and reason is None, rc, stdout, stderr, timed_out, reason, layers)


def _encode(text):
    # Lone surrogates cannot be UTF-8; passing them through makes the child
    # report a syntax error instead of the caller raising UnicodeEncodeError.
    return text.encode("utf-8", "surrogatepass")


def _parse_layers(data):
    try:
        layers = json.loads(data)
    except ValueError:
        return ()
    return tuple(str(x) for x in layers) if isinstance(layers, list) else ()


def _killed_reason(rc, timed_out, stderr):
    if timed_out:
        return "timeout"
    if rc == _SETUP_FAILED and "sandbox setup failed" in stderr:
        return "sandbox_error"
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and 128 < rc < 160 else 0)
    if sig:  # killed directly (weak mode) or relayed by bubblewrap as 128 + signal
        named = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size", signal.SIGKILL: "killed"}
        return named.get(sig, f"signal {sig}")
    tail = stderr[-2000:]
    if rc and "MemoryError" in tail:
        return "memory"
    if rc and "[Errno 27] File too large" in tail:
        return "file_size"  # Python ignores SIGXFSZ, so the limit surfaces as EFBIG
    return None
