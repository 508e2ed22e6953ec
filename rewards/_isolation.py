"""Which sandbox this machine can give, and the bubblewrap command line for it.

Settings (environment variables, read on every call):

``POSTTRAIN_SANDBOX``         ``bwrap`` (default) or ``weak``. ``weak`` is an
                              explicit opt-in to rlimits + privilege drop + the
                              audit hook, with no OS isolation.
``POSTTRAIN_BWRAP``           the bubblewrap binary (default: ``bwrap`` on PATH).
``POSTTRAIN_SANDBOX_PYTHON``  the interpreter to run inside the sandbox.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from functools import cache
from pathlib import Path

__all__ = ["BWRAP_ENV", "MODE_ENV", "PYTHON_ENV", "SandboxUnavailable", "bwrap_argv", "bwrap_binary",
           "requested_mode", "sandbox_python", "sandbox_user_can_run"]

MODE_ENV = "POSTTRAIN_SANDBOX"
BWRAP_ENV = "POSTTRAIN_BWRAP"
PYTHON_ENV = "POSTTRAIN_SANDBOX_PYTHON"
WORKDIR = "/sandbox"
NOBODY = 65534


class SandboxUnavailable(RuntimeError):
    """No OS isolation here, and the weak mode was not chosen: untrusted code is not run."""


def requested_mode() -> str:
    """``"bwrap"`` or ``"weak"``, from ``POSTTRAIN_SANDBOX``."""
    mode = os.environ.get(MODE_ENV, "").strip().lower() or "bwrap"
    if mode not in ("bwrap", "weak"):
        raise SandboxUnavailable(f"{MODE_ENV}={mode!r}: expected 'bwrap' (the default) or 'weak'")
    return mode


def unavailable_message(problem: str) -> str:
    """The refusal text: what is missing and the two ways forward."""
    return (f"code sandbox unavailable: {problem}. Untrusted code is only run under OS isolation "
            "(bubblewrap: `apt-get install bubblewrap`, or `make install`). To accept a weaker sandbox "
            f"(rlimits, privilege drop and an audit hook, which hostile code has escaped), set {MODE_ENV}=weak "
            "or pass allow_weak_sandbox=True to the reward.")


def bwrap_binary() -> str:
    """The bubblewrap executable to use; raises :class:`SandboxUnavailable` if there is none."""
    configured = os.environ.get(BWRAP_ENV, "").strip()
    path = configured or shutil.which("bwrap") or ""
    if not path or not os.access(path, os.X_OK) or os.path.isdir(path):
        where = f"{BWRAP_ENV}={configured!r} is not an executable" if configured else "no `bwrap` on PATH"
        raise SandboxUnavailable(unavailable_message(where))
    return os.path.realpath(path)


def sandbox_user_can_run(python: str) -> bool:
    """Whether the sandbox user can run ``python`` and read its standard library."""
    if os.geteuid() != 0:
        return os.access(python, os.X_OK)
    major_minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(python).resolve().parent.parent
    stdlib = [prefix / "lib" / major_minor / "os.py", prefix / "lib" / Path(python).name / "os.py"]
    return _world_reachable(Path(python)) and any(p.exists() and _world_reachable(p) for p in stdlib)


def _world_reachable(path: Path) -> bool:
    try:
        real = path.resolve()
        if not all(os.stat(parent).st_mode & stat.S_IXOTH for parent in real.parents):
            return False
        return bool(os.stat(real).st_mode & stat.S_IROTH)
    except OSError:
        return False


@cache
def base_python() -> str:
    """The running interpreter's real binary (not a venv shim); the child needs only the stdlib."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def sandbox_python() -> str:
    """The interpreter the sandbox runs: this one if the sandbox user can run it, else a system one.

    A root caller's sandbox runs as ``nobody``, which cannot enter e.g. a
    pyenv under a 0700 ``/root``; the same minor version from ``/usr`` then
    runs the code instead.
    """
    configured = os.environ.get(PYTHON_ENV, "").strip()
    if configured:
        return configured
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (base_python(), f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.exists(candidate) and sandbox_user_can_run(candidate):
            return os.path.realpath(candidate)
    raise SandboxUnavailable(unavailable_message(
        f"the sandbox user (nobody) cannot run {base_python()} and there is no /usr/bin/python{version}; "
        f"install python{version} system-wide or set {PYTHON_ENV}"))


def bwrap_argv(bwrap: str, python: str, *, disk_mb: int, code_fd: int, info_fd: int) -> list[str]:
    """The bubblewrap command line, up to (not including) the command it runs.

    A private root made of read-only system directories, a size-capped tmpfs
    as the only writable place, every namespace unshared (no network at all),
    no nested user namespaces, a new session (no terminal injection) and
    death with its parent.
    """
    argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    prefix = str(Path(python).resolve().parent.parent)
    if not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--dev", "/dev", "--remount-ro", "/dev",
             "--size", str(disk_mb * 1024 * 1024), "--perms", "0700", "--tmpfs", WORKDIR,
             "--symlink", WORKDIR, "/tmp",
             "--file", str(code_fd), f"{WORKDIR}/main.py",
             "--remount-ro", "/",
             "--chdir", WORKDIR, "--clearenv"]
    for key, value in {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
                       "HOME": WORKDIR, "TMPDIR": WORKDIR}.items():
        argv += ["--setenv", key, value]
    return [*argv, "--info-fd", str(info_fd), "--"]
