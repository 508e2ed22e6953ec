"""Trainer callbacks the pipeline attaches to every stage: a metrics file and a NaN guard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from posttrain.failpoints import failpoint


class MetricsFile(TrainerCallback):
    """Append every log record (loss, lr, rewards, ...) to `metrics.jsonl` with its step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")


class CheckpointFailpoint(TrainerCallback):
    """The `training` failpoint: a test kills the process right after a checkpoint is written."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        failpoint("training")


def keep_metrics_through(path: Path, step: int) -> None:
    """Drop log records after `step`: a resumed stage logs those steps again."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class NonFiniteLossGuard(TrainerCallback):
    """Stop training at the first NaN/inf loss and remember where it happened.

    Continuing after a non-finite loss only writes garbage weights and
    checkpoints; stopping keeps the last good checkpoint on disk.
    """

    def __init__(self) -> None:
        self.bad_step: int | None = None
        self.bad_value: float | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            self.bad_step, self.bad_value = state.global_step, loss
            control.should_training_stop = True
            control.should_save = False
