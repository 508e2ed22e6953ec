"""Memory pre-flight: a stage's worst-case batch runs once before its first step, so out-of-memory shows in seconds.

Without it, the longest batch may come an hour into training (data in random order, or grouped by length)
and fail then. The worst case is the batch size at the longest sequence the stage will see: the longest
tokenized row of its training data (prompt plus the longer answer for pairs), capped at `train.max_length`,
plus `max_completion_length` for stages that generate; pair stages put chosen and rejected in one batch, so
twice the rows. One forward and backward pass at that shape, gradients dropped, random state restored: the
training that follows is exactly the one without the pre-flight.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from posttrain.errors import UserError

OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "DefaultCPUAllocator")


class MemoryPreflight(TrainerCallback):
    def __init__(self, *, stage: str, max_length: int, extra_length: int = 0, rows_per_example: int = 1) -> None:
        self.stage, self.max_length = stage, max_length
        self.extra_length, self.rows_per_example = extra_length, rows_per_example
        self.shape: tuple[int, int] | None = None
        """(rows, tokens) of the batch the pre-flight ran, once it ran."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, train_dataloader: Any = None,
                       **kwargs: Any) -> None:
        if model is None or getattr(args, "deepspeed", None) or getattr(args, "fsdp", None):
            return  # a sharded model only runs inside its engine; its own memory estimate is the engine's
        longest = longest_row(getattr(train_dataloader, "dataset", None))
        length = min(longest or self.max_length, self.max_length) + self.extra_length
        rows = args.per_device_train_batch_size * self.rows_per_example
        self.shape = (rows, length)
        try:
            worst_case_step(model, rows=rows, length=length)
        except Exception as exc:
            if not is_out_of_memory(exc):
                return
            raise UserError(
                f"stage {self.stage}: its longest batch ({rows} rows × {length} tokens) does not fit in memory "
                f"({_first_line(exc)}). Lower train.batch_size (raise train.grad_accum to keep the batch per step), "
                f"lower train.max_length, set train.gradient_checkpointing: true, or load the base in 4-bit "
                f"(model.quantize: 4bit)."
            ) from None


def longest_row(dataset: Any) -> int | None:
    """The longest tokenized row of a trainer's dataset, or None when it holds no token ids (prompts only)."""
    columns = set(getattr(dataset, "column_names", None) or ())
    if "input_ids" in columns:
        return max((len(ids) for ids in dataset["input_ids"]), default=None)
    answers = [c for c in ("chosen_input_ids", "rejected_input_ids", "completion_input_ids") if c in columns]
    if "prompt_input_ids" in columns and answers:
        prompts = dataset["prompt_input_ids"]
        longest_answers = [max(len(row) for row in rows) for rows in zip(*(dataset[c] for c in answers), strict=True)]
        return max((len(p) + a for p, a in zip(prompts, longest_answers, strict=True)), default=None)
    return None


def worst_case_step(model: Any, *, rows: int, length: int) -> None:
    """One forward and backward pass of a `rows × length` batch; no weight moves, random state restored."""
    device = next(model.parameters()).device
    token = getattr(model.config, "bos_token_id", None) or 1
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            model.train()
            ids = torch.full((rows, length), int(token), dtype=torch.long, device=device)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            del loss, ids
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return any(marker in str(exc) for marker in OOM_MARKERS)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def preflight_for(stage: str, spec: Any, data_kinds: tuple[str, ...]) -> MemoryPreflight:
    """The pre-flight of a stage from its spec: `train.max_length`, a generating stage's `max_completion_length`,
    two rows per example for stages trained on pairs."""
    return MemoryPreflight(
        stage=stage, max_length=spec.train.max_length, extra_length=getattr(spec, "max_completion_length", 0) or 0,
        rows_per_example=2 if "preference" in data_kinds else 1,
    )
