"""What the dashboard shows of a run, read from its directory's files only (never the runner's memory).

A stage's progress is its `metrics.jsonl` (every record carries `step` and the planned
`max_steps`, see training/callbacks.MetricsFile) and its `stage.json` (status, start time);
whether a run is being worked on is whether another process holds its lock.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path
from typing import Any

from posttrain.run_layout import BASE, RunDir

REWARD_KEYS = ("reward", "rewards/margins", "rewards/chosen")
"""The first of these a stage logs is its reward curve (GRPO's mean reward, DPO's margin)."""


def lock_holder(run: RunDir) -> str | None:
    """The PID written in the run's lock while a process holds it; None when nobody does."""
    try:
        handle = run.lock_file.open("r")
    except OSError:  # no lock file: never run, or not here
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _records(path: Path) -> list[dict[str, Any]]:
    """The metrics file's complete lines (the last one may be half written while a stage trains)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            out.append(record)
    return out


def _curve(records: list[dict[str, Any]], key: str) -> list[list[float]]:
    return [[r["step"], float(r[key])] for r in records if isinstance(r.get(key), int | float)]


def _planned_steps(recipe: dict[str, Any], stage: str) -> int | None:
    for spec in recipe.get("stages") or []:
        if isinstance(spec, dict) and spec.get("name") == stage:
            steps = (spec.get("train") or {}).get("max_steps")
            return steps if isinstance(steps, int) and steps > 0 else None
    return None


def stage_status(run: RunDir, stage: str, recipe: dict[str, Any], now: float) -> dict[str, Any]:
    """One stage: status, step / total, loss and reward curves, time left while it trains."""
    record = run.read_stage(stage) or {}
    records = _records(run.metrics_file(stage))
    step = max((r["step"] for r in records), default=0)
    totals = [r["max_steps"] for r in records if isinstance(r.get("max_steps"), int) and r["max_steps"] > 0]
    total = totals[-1] if totals else _planned_steps(recipe, stage)
    reward_key = next((k for k in REWARD_KEYS if any(k in r for r in records)), None)
    status = record.get("status") or "pending"
    left = None
    started = record.get("started")
    if status == "running" and step and total and isinstance(started, int | float):
        # The stage's wall time so far includes loading its model, so this errs on the long side.
        left = max(0.0, (now - started) / step * (total - step))
    return {
        "name": stage, "type": record.get("type") or "", "status": status, "step": step, "total": total,
        "seconds": record.get("seconds"), "left_s": left, "error": record.get("error"),
        "loss": _curve(records, "loss"), "reward_key": reward_key,
        "reward": _curve(records, reward_key) if reward_key else [],
        "evaluated": run.eval_file(stage).is_file(),
    }


def run_status(root: Path) -> dict[str, Any]:
    """One run directory as the dashboard shows it."""
    run = RunDir(root)
    now = time.time()
    try:
        recipe = run.recipe()
    except Exception:  # a damaged resolved recipe: show the stages found on disk
        recipe = {}
    stages = [stage_status(run, s, recipe, now) for s in run.stages() if s != BASE]
    holder = lock_holder(run)
    statuses = {s["status"] for s in stages}
    if holder:
        state = "running"
    elif "failed" in statuses:
        state = "failed"
    elif stages and statuses == {"completed"}:
        state = "completed"
    elif "running" in statuses:
        state = "interrupted"  # stage.json says running but nobody holds the lock: killed or stopped
    else:
        state = "incomplete" if stages else "empty"
    current = next((s["name"] for s in stages if s["status"] == "running"), None)
    return {
        "name": root.name, "status": state, "holder": holder, "current": current, "stages": stages,
        "base_evaluated": run.eval_file(BASE).is_file(), "report": run.report_html.is_file(),
        "updated": max((p.stat().st_mtime for p in root.glob("*/stage.json")), default=None),
    }


def run_dirs(runs_dir: Path) -> list[Path]:
    """The run directories in `runs_dir`, by name (hidden folders, the dashboard's own, are not runs)."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and RunDir(p).is_run())
