"""Machines 1..M-1 of a multi-machine run: join each training stage that machine 0 launches.

Machine 0 runs the whole recipe (`posttrain run`). Every other machine runs
the same command with its own `launch.machine_rank`: it plans the run the
same way, and for each stage the plan trains it starts this machine's part
of the stage's `accelerate launch`, which waits at the rendezvous until
machine 0's part arrives. The worker reads the job file machine 0 wrote
only after that rendezvous, so the run directory must be on a filesystem
every machine shares, at the same path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.console import Console

from posttrain.launch.job import JOB_FILE, launch_dir
from posttrain.launch.launcher import LOG_FILE, accelerate_argv, rank_error, run_streaming
from posttrain.recipe.loader import LoadedRecipe


def follow_recipe(
    loaded: LoadedRecipe, *, runs_dir: Path, force: Iterable[str] = (), console: Console | None = None
) -> list[str]:
    """Take part in every training stage of the run machine 0 leads; the names of the stages joined."""
    from posttrain.pipeline.plan import plan_run
    from posttrain.pipeline.session import open_session

    console = console or Console()
    recipe = loaded.recipe
    rank = recipe.launch.machine_rank
    session = open_session(loaded, runs_dir=runs_dir, console=console)
    plan = plan_run(session, force=force)
    joined: list[str] = []
    for stage in plan.stages:
        if stage.status == "cached":
            continue
        folder = launch_dir(session.run_dir / stage.name)
        console.print(f"machine {rank}: joining stage [bold]{stage.name}[/]")
        argv = accelerate_argv(recipe, loaded.base_dir, folder / JOB_FILE)
        # Not in the stage folder: machine 0 empties that folder when the stage starts.
        log = session.run_dir / f"machine{rank}" / f"{stage.name}-{LOG_FILE}"
        returncode = run_streaming(argv, log, console)
        if returncode != 0:
            raise rank_error(stage.name, folder, returncode)
        joined.append(stage.name)
    return joined
