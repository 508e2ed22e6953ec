"""Recipes started from the dashboard: `posttrain run` as a subprocess, stopped like Ctrl-C.

The subprocess is the command a user types, so the run directory's lock, caching and
resume all hold as they do in a terminal. A start is refused while another process holds
the run's lock (naming its PID) or while this dashboard's own start of it is still loading.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.errors import DataPrepError
from posttrain.errors import UserError
from posttrain.recipe.loader import load_recipe
from posttrain.run_layout import RunDir
from posttrain.ui.runs import lock_holder

RECIPE_SUFFIXES = (".yaml", ".yml")


def recipe_files(recipes_dir: Path) -> list[str]:
    """Recipe files under `recipes_dir`, as paths relative to it (hidden folders skipped)."""
    if not recipes_dir.is_dir():
        return []
    found = []
    for path in sorted(recipes_dir.rglob("*")):
        relative = path.relative_to(recipes_dir)
        if path.suffix in RECIPE_SUFFIXES and path.is_file() and not any(p.startswith(".") for p in relative.parts):
            found.append(relative.as_posix())
    return found


def validate(recipe: Path) -> dict[str, Any]:
    """What `posttrain validate` says of the file: its run name, or every problem with its line."""
    try:
        loaded = load_recipe(recipe, [])
    except (UserError, DataPrepError) as exc:
        return {"ok": False, "name": None, "errors": [exc.render() if isinstance(exc, UserError) else str(exc)]}
    return {"ok": True, "name": loaded.recipe.name, "errors": []}


@dataclass
class Job:
    name: str
    recipe: str
    process: subprocess.Popen
    log: Path

    def to_json(self) -> dict[str, Any]:
        code = self.process.poll()
        try:
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            tail = ""
        return {"name": self.name, "recipe": self.recipe, "pid": self.process.pid,
                "state": "running" if code is None else "exited", "returncode": code, "output": tail}


class Jobs:
    """The `posttrain run` subprocesses this dashboard started, by run name."""

    def __init__(self, runs_dir: Path, recipes_dir: Path) -> None:
        self.runs_dir, self.recipes_dir = runs_dir, recipes_dir
        self.logs = Path(tempfile.mkdtemp(prefix="posttrain-ui-jobs-"))
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def start(self, recipe: Path, relative: str) -> Job:
        """Start `posttrain run RECIPE --runs-dir RUNS_DIR`; a UserError when the recipe or the run refuses."""
        checked = validate(recipe)
        if not checked["ok"]:
            raise UserError("\n".join(checked["errors"]))
        name = checked["name"]
        with self.lock:
            mine = self.jobs.get(name)
            if mine is not None and mine.process.poll() is None:
                raise UserError(f"run {name} is in use by another posttrain process (PID {mine.process.pid}, "
                                "started from this dashboard); stop it first")
            holder = lock_holder(RunDir(self.runs_dir / name))
            if holder:
                raise UserError(f"run directory {self.runs_dir / name} is in use by another posttrain process "
                                f"(PID {holder}); wait for it to finish")
            log = self.logs / f"{name}.log"
            with log.open("wb") as out:
                # A session of its own: Stop sends SIGINT to the whole group, as Ctrl-C in a terminal does.
                process = subprocess.Popen(
                    [sys.executable, "-m", "posttrain.cli", "run", str(recipe), "--runs-dir", str(self.runs_dir)],
                    cwd=recipe.parent, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            self.jobs[name] = job = Job(name, relative, process, log)
        return job

    def stop(self, name: str) -> Job:
        """Ctrl-C for the run: SIGINT to its process group; the run exits 130 and a rerun resumes."""
        job = self.jobs.get(name)
        if job is None or job.process.poll() is not None:
            raise UserError(f"no run {name} started from this dashboard is running")
        os.killpg(job.process.pid, signal.SIGINT)
        return job

    def listing(self) -> list[dict[str, Any]]:
        return [job.to_json() for job in self.jobs.values()]

    def close(self) -> None:
        """On shutdown: interrupt every run still going (each resumes on its next start)."""
        for job in self.jobs.values():
            if job.process.poll() is None:
                os.killpg(job.process.pid, signal.SIGINT)
        for job in self.jobs.values():
            try:
                job.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(job.process.pid, signal.SIGKILL)
