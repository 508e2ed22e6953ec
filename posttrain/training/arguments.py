"""The TrainingArguments every stage shares, built from the recipe's `train:` block."""

from __future__ import annotations

from typing import Any

import torch

from posttrain.models.precision import mixed_precision
from posttrain.stagekit import StageContext
from posttrain.stagekit.specs import TrainSpec
from posttrain.tracking import report_to


def common_arguments(ctx: StageContext, train: TrainSpec, *, trains_adapter: bool = False) -> dict[str, Any]:
    """Keyword arguments for any TRL `*Config` (they all extend TrainingArguments)."""
    on_gpu = torch.cuda.is_available()
    return {
        "output_dir": str(ctx.checkpoints_dir),
        "max_steps": train.max_steps,
        "num_train_epochs": train.epochs,
        "learning_rate": train.lr,
        "per_device_train_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        # transformers 5 reads a float below 1 as a fraction of the total steps.
        "warmup_steps": train.warmup_ratio,
        "lr_scheduler_type": train.scheduler,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "gradient_checkpointing": train.gradient_checkpointing,
        "logging_steps": train.logging_steps,
        # transformers hides NaN/inf losses from the logs by default; the NaN guard must see them.
        "logging_nan_inf_filter": False,
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": 2,
        "optim": train.optim,
        "seed": ctx.seed,
        "data_seed": ctx.seed,
        **mixed_precision(ctx.model_spec.dtype, trains_adapter=trains_adapter),
        # TensorBoard/MLflow when the recipe's `tracking:` asks (posttrain/tracking.py sets it per stage).
        "report_to": report_to(),
        "run_name": ctx.stage_dir.name,
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
        "use_cpu": not on_gpu,
    }
