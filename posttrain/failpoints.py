"""Named places where a test can have posttrain killed, to prove that no kill loses or duplicates work.

`POSTTRAIN_FAILPOINT=<name>` makes the process SIGKILL itself the first time it
reaches `failpoint(name)`: no cleanup runs, exactly as with `kill -9` or an
out-of-memory kill. `POSTTRAIN_FAILPOINT=<name>:SIGTERM` (or `:SIGUSR1`) sends that
signal instead, as a preempting scheduler would; `<name>:FILL` fills the disk holding
`$POSTTRAIN_FILL` (a file it creates) to the last byte and goes on, so the next write
fails as on a full disk; `<name>:STALL<rank>` makes that rank of a launched stage sleep
forever (a hung rank). Training steps are points too:
`step<N>`, at the end of optimizer step N. Unset (always, outside tests), a failpoint
costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time

POINTS = ("curation", "training", "evaluation", "export", "leaderboard")


def failpoint(name: str) -> None:
    wanted = os.environ.get("POSTTRAIN_FAILPOINT")
    if not wanted:
        return
    point, _, action = wanted.partition(":")
    if point != name:
        return
    if action == "FILL":
        fill_disk(os.environ["POSTTRAIN_FILL"])
    elif action.startswith("STALL"):  # STALL<rank>: that rank of a launched stage stops making progress
        if os.environ.get("RANK", "0") == action[len("STALL"):]:
            while True:
                time.sleep(60)
    else:
        os.kill(os.getpid(), signal.Signals[action] if action else signal.SIGKILL)


def fill_disk(path: str) -> None:
    """Write `path` until its filesystem has no byte left (chunks halving down to one byte)."""
    chunk = 1 << 20
    with open(path, "ab", buffering=0) as f:
        while chunk:
            try:
                f.write(b"\0" * chunk)
            except OSError:
                chunk //= 2
