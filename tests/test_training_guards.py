"""A NaN loss stops the stage with a clear error and keeps what was saved."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from rich.console import Console
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from posttrain.errors import TrainingError
from posttrain.models.lineage import Lineage
from posttrain.recipe.schema import recipe_model
from posttrain.stagekit import StageContext
from posttrain.training.arguments import common_arguments
from posttrain.training.callbacks import MetricsFile, NonFiniteLossGuard
from posttrain.training.outputs import train_and_save


class PoisonWeights(TrainerCallback):
    """Turn the weights into NaN after `at_step` optimizer steps, as a diverging run would."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at_step:
            with torch.no_grad():
                for param in model.parameters():
                    param.fill_(float("nan"))


def test_nan_loss_stops_training_with_step_and_keeps_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [{"messages": [{"role": "user", "content": f"{i} + 1?"}, {"role": "assistant", "content": str(i + 1)}]}
            for i in range(32)]
    recipe = recipe_model().model_validate(
        {
            "name": "nan",
            "model": {"base": str(tiny_model_dir)},
            "stages": [{"name": "s", "type": "sft", "data": "d",
                        "train": {"max_steps": 6, "batch_size": 4, "logging_steps": 1, "save_steps": 2}}],
        }
    )
    ctx = StageContext(
        model_spec=recipe.model, eval_spec=recipe.eval, seed=recipe.seed, stage_dir=tmp_path / "s", input=Lineage(str(tiny_model_dir)), tokenizer=tokenizer,
        datasets={}, console=Console(quiet=True),
        callbacks=[MetricsFile(tmp_path / "metrics.jsonl"), NonFiniteLossGuard(), PoisonWeights(at_step=2)],
    )
    (tmp_path / "s").mkdir()
    config = SFTConfig(**common_arguments(ctx, recipe.stages[0].train), max_length=32)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=config,
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=ctx.callbacks,
    )
    with pytest.raises(TrainingError, match=r"loss became nan at step 3"):
        train_and_save(ctx, trainer, full_finetune=False)

    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert all(math.isfinite(x) for x in losses[:2]) and math.isnan(losses[-1])
    assert len(losses) == 3, "training must stop at the first NaN, not run to max_steps"
    assert (ctx.checkpoints_dir / "checkpoint-2").is_dir(), "the last good checkpoint stays on disk"
    assert not (ctx.checkpoints_dir / "checkpoint-4").exists()
