"""Supervised fine-tuning on chat data with TRL's SFTTrainer (LoRA or full)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from posttrain.run_layout import RunDir
from posttrain.rundir import write_json
from posttrain.stagekit import HeldOutObjective, Panel, StageContext, StageResult, StageType
from posttrain.stagekit.objective import held_out_rows, input_model
from posttrain.stagekit.specs import StageCommon


class SFTStage(StageCommon):
    type: Literal["sft"]
    packing: bool = Field(False, description="Pack several examples into each max_length sequence.")
    loss_on: Literal["completion", "all"] = Field(
        "completion", description="Train on the last assistant turn only, or on every token."
    )
    group_by_length: bool = Field(
        True,
        description="Batch examples of similar length together: less padding, same examples per epoch "
        "(ignored with packing).",
    )


def run(ctx: StageContext, spec: SFTStage) -> StageResult:
    # Trainer libraries load here, not at import: validating a recipe must not pay for them.
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from data_prep import read_rows
    from posttrain.models.precision import sft_speed_options
    from posttrain.training.arguments import common_arguments
    from posttrain.training.batching import sft_batching
    from posttrain.training.learned_loss import learned_positions_loss
    from posttrain.training.length_grouping import length_grouped
    from posttrain.training.lora import lora_config
    from posttrain.training.mask_check import check_loss_mask
    from posttrain.training.outputs import train_and_save

    rows = read_rows(ctx.dataset(spec.data).train_path)
    train_dataset = Dataset.from_list([sft_example(row["messages"], spec.loss_on) for row in rows])

    config = SFTConfig(
        **common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune),
        **sft_speed_options(packing=spec.packing),
        max_length=spec.train.max_length,
        packing=spec.packing,
        completion_only_loss=spec.loss_on == "completion",
    )
    trainer_class = length_grouped(SFTTrainer) if spec.group_by_length and not spec.packing else SFTTrainer
    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    trainer = learned_positions_loss(trainer_class)(
        model=model,
        args=config,
        train_dataset=train_dataset,
        processing_class=ctx.tokenizer,
        peft_config=None if spec.full_finetune else lora_config(spec.lora, model),
        callbacks=ctx.callbacks,
        **sft_batching(ctx.tokenizer, packing=spec.packing),
    )
    if not spec.packing:  # packed rows mix examples: their masks are TRL's packing's
        example = check_loss_mask(trainer, ctx.tokenizer, stage=spec.name, dataset=spec.data, rows=rows,
                                  max_length=spec.train.max_length)
        if example is not None:
            write_json(ctx.stage_dir / RunDir.LOSS_MASK, example)
    return train_and_save(ctx, trainer, full_finetune=spec.full_finetune)


def sft_example(messages: list[dict[str, str]], loss_on: str) -> dict[str, Any]:
    """A TRL conversational example: prompt/completion when only the last answer is learned.

    >>> sft_example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "completion")
    {'prompt': [{'role': 'user', 'content': 'hi'}], 'completion': [{'role': 'assistant', 'content': 'hello'}]}
    """
    if loss_on == "completion":
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    return {"messages": messages}


def held_out_objective(ctx: StageContext, spec: SFTStage, trained: Any) -> HeldOutObjective | None:
    """Held-out loss: mean negative log-likelihood per token of the last assistant answer, before and after.

    Measured on the answer's tokens whatever `loss_on` is, so every SFT stage reports the same quantity.
    """
    from posttrain.training.objectives import completion_logps, encode_completion, objective_of, token_loss

    rows = [row for row in held_out_rows(ctx, spec.data) if row["messages"][-1]["role"] == "assistant"]
    if not rows:
        return None
    items = [
        encode_completion(ctx.tokenizer, row["messages"][:-1], row["messages"][-1]["content"],
                          max_length=spec.train.max_length)
        for row in rows
    ]
    pad_id = ctx.tokenizer.pad_token_id
    with input_model(ctx, trained) as before:
        loss_before = token_loss(completion_logps(before, items, pad_id=pad_id))
    loss_after = token_loss(completion_logps(trained, items, pad_id=pad_id))
    return objective_of({"loss": loss_before}, {"loss": loss_after}, rows=len(rows), lower_is_better=("loss",))


STAGE = StageType(
    name="sft", spec=SFTStage, run=run, data_kinds=("chat",), held_out_objective=held_out_objective,
    panels=(Panel("next-token accuracy (answer tokens)", ("mean_token_accuracy", "eval_mean_token_accuracy")),),
)
