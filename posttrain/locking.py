"""File locks that a killed process cannot leave stuck: the kernel drops an `flock` with its holder.

`exclusive(path)` waits for the lock (a cache being filled by another process);
`sole_writer(path, what)` refuses at once and names the holder's PID (a run
directory another `posttrain run` is writing).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from posttrain.errors import UserError


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold `path`'s lock, waiting for another holder to finish."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def sole_writer(path: Path, what: str) -> Iterator[None]:
    """Hold `path`'s lock or fail with a UserError naming the process that holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise UserError(
                f"{what} is in use by another posttrain process (PID {holder}); wait for it to finish, "
                "or give this run another --runs-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
