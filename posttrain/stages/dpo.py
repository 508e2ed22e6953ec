"""Direct preference optimization with TRL's DPOTrainer and a LoRA.

The reference model is the stage's input model: TRL evaluates it by switching
the new adapter off, and the input's own adapters are already merged into the
weights, so after SFT the reference is the SFT model, not the base.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from data_prep import read_rows
from posttrain.recipe.schema import DPOStage
from posttrain.stages.context import StageContext, StageResult
from posttrain.training.arguments import common_arguments
from posttrain.training.lora import lora_config
from posttrain.training.outputs import train_and_save


def run(ctx: StageContext, spec: DPOStage) -> StageResult:
    rows = read_rows(ctx.dataset(spec.data).train_path)
    train_dataset = Dataset.from_list([preference_example(row) for row in rows])

    config = DPOConfig(
        **common_arguments(ctx, spec.train),
        max_length=spec.train.max_length,
        beta=spec.beta,
        loss_type=spec.loss_type if isinstance(spec.loss_type, list) else [spec.loss_type],
        loss_weights=spec.loss_weights,
        pad_token=ctx.tokenizer.pad_token,
    )
    trainer = DPOTrainer(
        model=ctx.load_input_model(),
        ref_model=None,
        args=config,
        train_dataset=train_dataset,
        processing_class=ctx.tokenizer,
        peft_config=None if spec.full_finetune else lora_config(spec.lora),
        callbacks=ctx.callbacks,
    )
    return train_and_save(ctx, trainer, full_finetune=spec.full_finetune)


def preference_example(row: dict[str, Any]) -> dict[str, Any]:
    """A TRL conversational preference example from a canonical preference row.

    >>> preference_example({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"})["chosen"]
    [{'role': 'assistant', 'content': '4'}]
    """
    return {
        "prompt": row["prompt"],
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }
