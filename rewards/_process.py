"""Process plumbing for :mod:`rewards.sandbox`: spawn, wait, kill everything, clean up."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import threading

__all__ = [
    "PidNamespaceWatch", "memfd", "read_capped", "read_nonblocking", "reaping_orphans", "remove_tree", "spawn_and_wait",
]


class PidNamespaceWatch:
    """Holds the sandbox's pid 1 (named on bubblewrap's ``--info-fd``) so a run ends only when its pid namespace has.

    bubblewrap's outer process may exit a moment before the namespace's pid 1
    does, and a timeout kills only the outer process; until pid 1 is gone,
    daemons the code started are still alive. A pidfd taken while the
    sandbox runs lets :meth:`ended` kill pid 1 and wait for it without ever
    signalling a recycled pid; the kernel kills the rest of the namespace
    before pid 1 counts as exited.
    """

    def __init__(self, info_r: int, info_w: int):
        self._info_r, self._info_w = info_r, info_w
        self._pidfd: int | None = None
        self.started = False
        self._reader = threading.Thread(target=self._read, daemon=True)

    def spawned(self) -> None:
        os.close(self._info_w)  # only bubblewrap holds the write end now: EOF when it is done with it
        self._info_w = -1
        self._reader.start()

    def _read(self) -> None:
        data = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(self._info_r, 4096):
                data += chunk
                if self._pidfd is None:
                    with contextlib.suppress(ValueError, OSError):
                        self._pidfd = os.pidfd_open(int(json.loads(data)["child-pid"]))
                        self.started = True

    def ended(self) -> None:
        if self._reader.is_alive():
            self._reader.join(timeout=5)
        if self._pidfd is None:
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        select.select([self._pidfd], [], [], 10)  # readable once pid 1, and so its whole namespace, is gone
        # When bubblewrap's outer process exited first, pid 1 was orphaned to us (see
        # `reaping_orphans`): reap it, or it stays a zombie until some init gets round to it.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)

    def close(self) -> None:
        """Release every descriptor (also when the launch failed half-way)."""
        if self._reader.is_alive():
            self._reader.join(timeout=5)
        for fd in (self._info_r, self._info_w, self._pidfd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._info_r = self._info_w = -1
        self._pidfd = None


_PR_SET_CHILD_SUBREAPER = 36
_subreaper_lock = threading.Lock()
_subreaper_users = 0


@contextlib.contextmanager
def reaping_orphans():
    """While inside, processes orphaned below this one are re-parented here instead of to the system's init.

    bubblewrap's outer process can exit before the pid namespace's pid 1 does; that
    pid 1 then becomes an orphan, and an init that reaps lazily (a container's)
    leaves a ``[bwrap] <defunct>`` behind every run. As a child subreaper we become
    its parent and :meth:`PidNamespaceWatch.ended` reaps it. Counted, so concurrent
    sandbox runs (threads) keep the flag until the last one leaves.
    """
    global _subreaper_users
    with _subreaper_lock:
        if _subreaper_users == 0:
            _set_child_subreaper(True)
        _subreaper_users += 1
    try:
        yield
    finally:
        with _subreaper_lock:
            _subreaper_users -= 1
            if _subreaper_users == 0:
                _set_child_subreaper(False)


def _set_child_subreaper(on: bool) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def spawn_and_wait(argv, cwd, env, stdin_fd, out, err, pass_fds, timeout_s, watch):
    """Run ``argv`` in a new session; on return every process of its group (and pid namespace) is dead and reaped.

    Returns ``(returncode, timed_out)``.
    """
    with reaping_orphans():
        return _spawn_and_wait(argv, cwd, env, stdin_fd, out, err, pass_fds, timeout_s, watch)


def _spawn_and_wait(argv, cwd, env, stdin_fd, out, err, pass_fds, timeout_s, watch):
    proc = subprocess.Popen(
        argv, stdin=stdin_fd, stdout=out, stderr=err, cwd=cwd or "/", env=env,
        start_new_session=True, close_fds=True, pass_fds=pass_fds,
    )
    if watch is not None:
        watch.spawned()
    expired = threading.Event()

    def kill_group():
        expired.set()
        _killpg(proc.pid)

    timer = threading.Timer(timeout_s, kill_group)
    timer.start()
    try:
        # Wait without reaping: while the leader is an unreaped zombie its
        # process-group id cannot be reused, so the final killpg cannot hit a
        # stranger, yet it still sweeps up any stragglers in the group.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    finally:
        timer.cancel()
        _killpg(proc.pid)
        if watch is not None:
            watch.ended()
        rc = proc.wait()
    return rc, expired.is_set()


@contextlib.contextmanager
def memfd(name, data):
    """An in-memory file holding ``data``, positioned at its start, that child processes inherit."""
    fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: the launcher and bubblewrap inherit it
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


def _killpg(pgid):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def read_capped(fh, limit):
    fh.seek(0)
    return fh.read(limit).decode("utf-8", errors="replace")


def read_nonblocking(fd):
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def remove_tree(path):
    """Delete a tree of any depth without recursion and without ever raising.

    One directory fd at a time, moving down by name and back up through
    ``..``: hostile depth (thousands of nested directories) cannot hit
    RecursionError, ENAMETOOLONG or the fd limit in the caller.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    with contextlib.suppress(OSError):
        current, names = os.open(path, flags), []
        try:
            while True:
                child = None
                with os.scandir(current) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            child = entry.name
                            break
                        os.unlink(entry.name, dir_fd=current)
                if child is not None:
                    below = os.open(child, flags, dir_fd=current)
                    os.close(current)
                    current = below
                    names.append(child)
                elif names:
                    above = os.open("..", flags, dir_fd=current)
                    os.close(current)
                    current = above
                    os.rmdir(names.pop(), dir_fd=current)
                else:
                    break
        finally:
            os.close(current)
        os.rmdir(path)
