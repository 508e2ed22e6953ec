"""Named places where a test can have posttrain killed, to prove that no kill loses or duplicates work.

`POSTTRAIN_FAILPOINT=<name>` makes the process SIGKILL itself the first time it
reaches `failpoint(name)`: no cleanup runs, exactly as with `kill -9` or an
out-of-memory kill. Unset (always, outside tests), a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("curation", "training", "evaluation", "export", "leaderboard")


def failpoint(name: str) -> None:
    if os.environ.get("POSTTRAIN_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
