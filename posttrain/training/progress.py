"""One progress bar per training stage (step, loss, time left) on the run's console, instead of tqdm's."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback


class TrainingProgress(TrainerCallback):
    """A rich bar per stage: `sft ━━━━━━ 12/20 loss 1.234 0:00:05 0:00:03`; the last loss stays on screen."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.progress: Progress | None = None
        self.task: Any = None
        self.loss = "loss –"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{self.label}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=state.max_steps, completed=state.global_step, loss=self.loss)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, loss=self.loss)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, int | float) and self.progress is not None:
            self.loss = f"loss {loss:.4f}"
            self.progress.update(self.task, loss=self.loss)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, loss=self.loss)
            self.progress.stop()
            self.progress = None


def use_own_progress(trainer: Any) -> None:
    """Drop the Trainer's tqdm bar and log printer when a `TrainingProgress` is attached (quiet console)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    callbacks = trainer.callback_handler.callbacks
    if any(isinstance(c, TrainingProgress) for c in callbacks):
        for default in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(default)
