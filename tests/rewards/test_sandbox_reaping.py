"""Every process a sandbox run starts is waited for before `run_python` returns: no zombies pile up.

bubblewrap's outer process can exit before its pid namespace's pid 1; that orphan
used to be left to the system's init, which in a container may never reap it, so a
long GRPO run with code rewards left thousands of ``[bwrap] <defunct>`` behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from rewards.sandbox import run_python


def _bwrap_processes() -> dict[int, tuple[str, int]]:
    """pid → (state, parent pid) of every bwrap process on the machine (zombies included)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if comm == "bwrap":
            found[int(entry.name)] = (state, int(ppid))
    return found


def test_no_zombie_after_100_runs():
    before = set(_bwrap_processes())
    codes = ["print(1)", "import sys; sys.exit(3)", "raise SystemExit('x')", "print(input())"]
    for i in range(100):
        result = run_python(codes[i % len(codes)], stdin="hi\n")
        assert result.killed_reason is None, result
        # checked right away: nothing of this run may be left, alive or defunct, for anyone to reap later
        left = {pid: info for pid, info in _bwrap_processes().items() if pid not in before}
        assert not left, f"run {i} left bwrap processes behind (pid: (state, ppid)): {left}"
    assert not [line for line in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()]


def test_no_zombie_after_timeouts_and_kills():
    before = set(_bwrap_processes())
    for code in ["while True: pass", "import time; time.sleep(30)", "import os, time\nos.fork()\ntime.sleep(30)"]:
        result = run_python(code, timeout_s=0.5, audit_hook=False)  # the hook would refuse the fork
        assert result.killed_reason == "timeout", result
        left = {pid: info for pid, info in _bwrap_processes().items() if pid not in before}
        assert not left, f"{code!r} left bwrap processes behind: {left}"
