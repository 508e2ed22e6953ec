"""Measure a stage's held-out objective once per stage fingerprint; `objective.json` in the stage folder keeps it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from posttrain.fingerprint import fingerprint
from posttrain.run_layout import RunDir
from posttrain.rundir import read_json, write_json
from posttrain.stagekit import HeldOutObjective, StageContext, StageType
from posttrain.stagekit.objective import HELD_OUT_MAX_ROWS

OBJECTIVE_VERSION = 3
"""Bump when what an objective measures changes, so cached objective.json files are recomputed
(3: ORPO and SimPO measure on-policy held-out pairs, with paired errors)."""


def objective_cached(
    stage_type: StageType,
    ctx: StageContext,
    spec: Any,
    stage_fingerprint: str,
    load_trained: Callable[[], Any],
    *,
    console: Console,
) -> HeldOutObjective | None:
    """The stage's held-out objective before and after it, or None (no hook, or no held-out rows).

    The stage fingerprint covers the input model, the data (its held-out split
    included), the stage's settings and the seed: with it unchanged, the
    objective is read back instead of measured.
    """
    if stage_type.held_out_objective is None:
        return None
    folder = ctx.stage_dir
    key = fingerprint(stage_fingerprint, "held-out objective", OBJECTIVE_VERSION, HELD_OUT_MAX_ROWS)
    cached = read_json(folder / RunDir.OBJECTIVE)
    if cached and cached.get("fingerprint") == key:
        return HeldOutObjective.from_dict(cached["objective"]) if cached.get("objective") else None

    started = time.time()
    with console.status(f"measuring {spec.name}'s objective on the held-out split of {spec.data!r}..."):
        objective = stage_type.held_out_objective(ctx, spec, load_trained())
    seconds = time.time() - started
    if objective is None:
        console.print(
            f"[dim]{spec.name}: dataset {spec.data!r} has no held-out rows, so no objective is measured "
            f"(set datasets.{spec.data}.eval_split)[/dim]"
        )
    write_json(folder / RunDir.OBJECTIVE, {
        "fingerprint": key, "stage": spec.name, "data": spec.data, "seconds": round(seconds, 2),
        "objective": objective.to_dict() if objective else None,
    })
    return objective

