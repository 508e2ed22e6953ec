"""Named places where a test can have posttrain killed, to prove that no kill loses or duplicates work.

`POSTTRAIN_FAILPOINT=<name>` makes the process SIGKILL itself the first time it
reaches `failpoint(name)`: no cleanup runs, exactly as with `kill -9` or an
out-of-memory kill. `POSTTRAIN_FAILPOINT=<name>:SIGTERM` (or `:SIGUSR1`) sends that
signal instead, as a preempting scheduler would. Training steps are points too:
`step<N>`, at the end of optimizer step N. Unset (always, outside tests), a failpoint
costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("curation", "training", "evaluation", "export", "leaderboard")


def failpoint(name: str) -> None:
    wanted = os.environ.get("POSTTRAIN_FAILPOINT")
    if not wanted:
        return
    point, _, sig = wanted.partition(":")
    if point == name:
        os.kill(os.getpid(), signal.Signals[sig] if sig else signal.SIGKILL)
