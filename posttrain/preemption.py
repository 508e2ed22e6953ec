"""Preemption: SIGTERM or SIGUSR1 (Slurm's `--signal`, a spot machine's notice) stops a run where its work is kept.

While a stage trains, the signal is only noted: the trainer saves a checkpoint at the next step
boundary and stops (`training/callbacks.PreemptionCheckpoint`), so the rerun resumes from that
step instead of the last periodic checkpoint. Anywhere else the run stops at once, as Ctrl-C
does (every state file is written atomically). Either way the command ends with
`RESUMABLE_EXIT` (75, EX_TEMPFAIL: "try again"), which a Slurm script requeues on, and the same
command resumes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

RESUMABLE_EXIT = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """The run was asked to stop (SIGTERM/SIGUSR1); what finished is on disk and a rerun resumes."""

    def __init__(self, signal_name: str, where: str = "") -> None:
        self.signal_name = signal_name
        self.where = where
        super().__init__(f"{signal_name} received{': ' + where if where else ''}")


class _State:
    deferred = 0
    """How many `deferred()` blocks are open: inside one, a signal is noted, not raised."""
    requested: int | None = None
    """The signal received, if any."""
    forwards: ClassVar[list[Callable[[int], None]]] = []
    """Where open `deferred()` blocks pass a signal on (the launched workers of a stage)."""


_state = _State()


def requested() -> int | None:
    """The preemption signal received since the handlers were installed, or None."""
    return _state.requested


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def raise_if_requested() -> None:
    """Stop between two pieces of work when a signal was noted while the last one finished."""
    if _state.requested is not None and not _state.deferred:
        raise Preempted(signal_name(_state.requested))


def _handler(signum: int, frame: Any) -> None:
    _state.requested = signum
    for forward in list(_state.forwards):
        forward(signum)
    if not _state.deferred:
        raise Preempted(signal_name(signum))


@contextmanager
def handle_preemption() -> Iterator[None]:
    """Turn SIGTERM/SIGUSR1 into `Preempted` for the duration (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _state.requested, _state.deferred = None, 0
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state.requested, _state.deferred, _state.forwards = None, 0, []


@contextmanager
def deferred(forward: Callable[[int], None] | None = None) -> Iterator[None]:
    """Within: a preemption signal is noted (`requested()`), passed to `forward` (the processes doing the work,
    which stop at their own safe point), and acted on by whoever runs the work."""
    _state.deferred += 1
    if forward is not None:
        _state.forwards.append(forward)
    try:
        yield
    finally:
        _state.deferred -= 1
        if forward is not None:
            _state.forwards.remove(forward)
