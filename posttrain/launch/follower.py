"""Machines 1..M-1 of a multi-machine run: join each training stage that machine 0 launches.

Machine 0 runs the whole recipe (`posttrain run`). Every other machine runs
the same command with its own `launch.machine_rank`: the CLI plans the run
the same way, and for each stage the plan trains this machine starts its
part of the stage's `accelerate launch`, which waits at the rendezvous until
machine 0's part arrives. The worker reads the job file machine 0 wrote
only after that rendezvous, so the run directory must be on a filesystem
every machine shares, at the same path.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from posttrain.launch.job import JOB_FILE, launch_dir
from posttrain.launch.launcher import LOG_FILE, accelerate_argv, rank_error, run_streaming
from posttrain.recipe.loader import LoadedRecipe


def follow_stages(loaded: LoadedRecipe, *, run_dir: Path, stages: list[str], console: Console) -> list[str]:
    """Take part in the launch of each of `stages` (those machine 0 trains, in order); the names joined."""
    recipe = loaded.recipe
    rank = recipe.launch.machine_rank
    joined: list[str] = []
    for stage in stages:
        folder = launch_dir(run_dir / stage)
        console.print(f"machine {rank}: joining stage [bold]{stage}[/]")
        argv = accelerate_argv(recipe, loaded.base_dir, folder / JOB_FILE)
        # Not in the stage folder: machine 0 empties that folder when the stage starts.
        returncode = run_streaming(argv, run_dir / f"machine{rank}" / f"{stage}-{LOG_FILE}", console)
        if returncode != 0:
            raise rank_error(stage, folder, returncode)
        joined.append(stage)
    return joined
