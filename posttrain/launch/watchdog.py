"""The hang watchdog of a launched stage: no rank finishing a step for `launch.hang_timeout` seconds fails the stage.

A rank that stalls (a deadlock in a data worker, a dead peer on another machine, an uneven number of
batches) leaves the others waiting in a collective forever. Each worker touches
`launch/heartbeat/rank<N>` at the end of every optimizer step (`Heartbeat`) and dumps its Python
stacks to `launch/stacks/rank<N>.txt` on SIGUSR2 (`faulthandler`, which answers even while the
main thread is blocked inside a collective). The orchestrator's watchdog thread sees no heartbeat
move, asks this machine's ranks for their stacks, stops the launch, and the stage fails with which
rank is where and what to check.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from transformers import TrainerCallback

HEARTBEAT_DIR = "heartbeat"
STACKS_DIR = "stacks"
COLLECTIVE = re.compile(r"all_reduce|all_gather|broadcast|barrier|reduce_scatter|distributed_c10d|_wait")
FRAMES_SHOWN = 4
STARTUP_GRACE = 300.0
"""Seconds a launch may take to its first heartbeat at least (imports, model loading, data), whatever the timeout."""


class Heartbeat(TrainerCallback):
    """Touch this rank's heartbeat file with its step at the end of every optimizer step."""

    def __init__(self, folder: Path, rank: int) -> None:
        self.path = folder / HEARTBEAT_DIR / f"rank{rank}"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.path.write_text(str(state.global_step))


def dump_stacks_on_request(folder: Path, rank: int) -> IO[str]:
    """SIGUSR2 writes every thread's Python stack to `stacks/rank<N>.txt`; keep the returned file open."""
    (folder / STACKS_DIR).mkdir(parents=True, exist_ok=True)
    out = open(folder / STACKS_DIR / f"rank{rank}.txt", "w")  # noqa: SIM115 - faulthandler writes to it later
    faulthandler.register(signal.SIGUSR2, file=out, all_threads=True, chain=False)
    return out


class HangWatchdog:
    """Watch the heartbeats of the launch in `folder`; past `timeout` seconds without one, stop `process`."""

    def __init__(self, folder: Path, timeout: float, *, what: str) -> None:
        self.folder, self.timeout, self.what = folder, timeout, what
        self.report: str | None = None
        self._process: subprocess.Popen | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="posttrain-hang-watchdog", daemon=True)

    def __enter__(self) -> HangWatchdog:
        for sub in (HEARTBEAT_DIR, STACKS_DIR):
            for stale in (self.folder / sub).glob("rank*"):
                stale.unlink(missing_ok=True)
        self._started = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def watch(self, process: subprocess.Popen) -> None:
        """Start watching once the launcher runs."""
        self._process = process
        self._thread.start()

    def _idle(self) -> tuple[float, float]:
        """(seconds since the last heartbeat or the launch, the allowance for that)."""
        beats = [p.stat().st_mtime for p in (self.folder / HEARTBEAT_DIR).glob("rank*")]
        if not beats:
            return time.time() - self._started, max(self.timeout, STARTUP_GRACE)
        return time.time() - max(beats), self.timeout

    def _watch(self) -> None:
        from posttrain.launch.launcher import signal_workers

        poll = min(5.0, self.timeout / 4)
        while not self._done.wait(poll):
            idle, allowed = self._idle()
            if idle > allowed:
                self.report = self._diagnose(idle)
                signal_workers(self.folder, signal.SIGKILL)  # they hold the output pipe the launcher streams
                if self._process is not None and self._process.poll() is None:
                    self._process.kill()
                return

    def _diagnose(self, idle: float) -> str:
        from posttrain.launch.launcher import signal_workers

        signal_workers(self.folder, signal.SIGUSR2)
        deadline = time.time() + 5
        while time.time() < deadline and not all(
            p.stat().st_size for p in (self.folder / STACKS_DIR).glob("rank*.txt")
        ):
            time.sleep(0.1)
        time.sleep(0.3)  # let the dumps finish
        return hang_report(self.folder, idle=idle, timeout=self.timeout, what=self.what)


def hang_report(folder: Path, *, idle: float, timeout: float, what: str) -> str:
    """Which rank is where: last steps, the innermost frames of each rank's main thread, what to check."""
    now = time.time()
    lines = [f"{what}: no rank finished an optimizer step for {idle:.0f} s (launch.hang_timeout: {timeout:g} s)."]
    steps = []
    for beat in sorted((folder / HEARTBEAT_DIR).glob("rank*"), key=_rank_of):
        steps.append(f"rank {_rank_of(beat)} step {beat.read_text() or '?'} ({now - beat.stat().st_mtime:.0f} s ago)")
    lines.append("last finished steps: " + (", ".join(steps) if steps else "none (stuck before the first step)"))
    suspects = []
    for dump in sorted((folder / STACKS_DIR).glob("rank*.txt"), key=_rank_of):
        frames = main_thread_frames(dump.read_text(errors="replace"))
        in_collective = any(COLLECTIVE.search(f) for f in frames[:8])
        if not in_collective:
            suspects.append(_rank_of(dump))
        where = "waiting in a collective" if in_collective else "NOT in a collective"
        lines.append(f"rank {_rank_of(dump)} ({where}), innermost first:")
        lines += [f"    {f}" for f in frames[:FRAMES_SHOWN]] or ["    (no stack written)"]
    if suspects:
        lines.append(f"likely stuck: rank {', '.join(map(str, suspects))} (the others wait for it).")
    lines.append(
        "What to check: code that runs on one rank only or a data loader worker that hangs; ranks with a different "
        "number of batches; the network between machines (NCCL_DEBUG=INFO, a dead peer). Ranks of other machines "
        f"dump no stack here. Full stacks: {folder / STACKS_DIR}/."
    )
    return "\n".join(lines)


def main_thread_frames(dump: str) -> list[str]:
    """The frames of the thread that received the signal (faulthandler's "Current thread"), innermost first."""
    block = re.search(r"Current thread[^\n]*\n((?:  File[^\n]*\n?)+)", dump)
    if block is None:
        block = re.search(r"Thread[^\n]*\n((?:  File[^\n]*\n?)+)", dump)
    if block is None:
        return []
    return [re.sub(r'^\s*File "([^"]+)", line (\d+) in (\S+)', _short, line).strip() for line in block.group(1).splitlines()]


def _short(match: re.Match[str]) -> str:
    path = match.group(1)
    parts = Path(path).parts
    shown = os.path.join(*parts[-2:]) if len(parts) >= 2 else path
    return f"{match.group(3)} ({shown}:{match.group(2)})"


def _rank_of(path: Path) -> int:
    digits = re.search(r"rank(\d+)", path.name)
    return int(digits.group(1)) if digits else -1
