"""Trainer callbacks the pipeline attaches to every stage: a metrics file, a NaN guard, preemption, resume order."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from posttrain.failpoints import failpoint


class MetricsFile(TrainerCallback):
    """Append every log record (loss, lr, rewards, ...) to `metrics.jsonl` with its step.

    Each record also carries the planned `max_steps`, so a reader of the file alone (`posttrain ui`)
    can show step / total and the time left while the stage trains."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "max_steps": state.max_steps, **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")


class CheckpointFailpoint(TrainerCallback):
    """The `training` failpoint (right after a checkpoint is written) and `step<N>` (at the end of step N)."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        failpoint("training")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        failpoint(f"step{state.global_step}")


class ResumedEpochShuffle(TrainerCallback):
    """A stage resumed mid-epoch on several processes shuffles that epoch as the uninterrupted run did.

    The trainer tells the sampler its epoch through accelerate's `DataLoaderShard.set_epoch`, which does not
    reach it through the `SkipBatchSampler(BatchSamplerShard(...))` built to skip a resumed epoch's first
    batches (transformers 5.25, accelerate 1.16): the resumed epoch was shuffled as epoch 0 and a launched
    run preempted after its first epoch ended with other weights. Every epoch start sets it here; the
    trainer's own call still wins wherever it lands.
    """

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = math.floor((state.epoch or 0.0) + 1e-6)  # a resumed state holds e.g. 1.25 within epoch 1
        for sampler in _epoch_samplers(kwargs.get("train_dataloader")):
            sampler.set_epoch(epoch)


def _epoch_samplers(loader: Any) -> list[Any]:
    """The index samplers under a (wrapped) dataloader that shuffle by epoch."""
    from torch.utils.data import BatchSampler, Sampler

    found, seen, todo = [], set(), [loader]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Sampler) and not isinstance(item, BatchSampler) and hasattr(item, "set_epoch"):
            found.append(item)
        todo += [getattr(item, name, None) for name in ("batch_sampler", "sampler", "base_dataloader")]
    return found


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


class PreemptionCheckpoint(TrainerCallback):
    """On SIGTERM/SIGUSR1 (noted by `posttrain.preemption`), save a checkpoint at the next step boundary and stop.

    With several processes every rank must stop at the same step (checkpoint saving is collective), so
    the ranks agree each step on whether any of them was signalled: one all-reduce of one integer.
    """

    def __init__(self) -> None:
        self.stopped_at: int | None = None
        self.signal: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from posttrain import preemption

        signum = _agreed_signal(preemption.requested())
        if signum:
            self.stopped_at, self.signal = state.global_step, signum
            control.should_save = True
            control.should_training_stop = True


def _agreed_signal(local: int | None) -> int:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local or 0
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = torch.tensor([local or 0], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())
