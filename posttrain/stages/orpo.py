"""ORPO: supervised fine-tuning and preference learning in one stage, with no reference model.

TRL's ORPOTrainer (trl.experimental) minimizes the SFT loss on the chosen
answer plus λ times an odds-ratio term that pushes the odds of the chosen
answer above those of the rejected one (Hong et al. 2024). It compares the
model only with itself, so it needs no reference model and no SFT stage
before it: a `reference` setting is refused.

With `on_policy`, the stage's data is a prompt dataset and the pairs are
sampled from the input model and ranked by rewards first, as for `dpo`
(training/pairs.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from posttrain.stagekit import HeldOutObjective, StageContext, StageResult, StageType
from posttrain.stagekit.declaration import DataNeed
from posttrain.stagekit.display import Panel
from posttrain.stagekit.specs import OnPolicyPairs, StageCommon, refuse_reference


class ORPOStage(StageCommon):
    type: Literal["orpo"]
    beta: PositiveFloat = Field(
        0.1,
        description="λ of the ORPO paper (TRL's `beta`): weight of the odds-ratio preference term added to "
        "the SFT loss on the chosen answer.",
    )
    on_policy: OnPolicyPairs | None = Field(
        None,
        description="Build pairs from a prompt dataset: sample from the input model, keep best vs worst "
        "by reward (ties skipped). Without it, `data` must be preference pairs.",
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_free(cls, data: Any) -> Any:
        return refuse_reference(data, method="ORPO", why="its odds ratio compares the model with itself")


def run(ctx: StageContext, spec: ORPOStage) -> StageResult:
    from datasets import Dataset

    # ORPO lives in trl.experimental, chosen knowingly; its import-time notice is noise for users.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from posttrain.training.arguments import common_arguments
    from posttrain.training.lora import lora_config
    from posttrain.training.outputs import train_and_save
    from posttrain.training.pairs import training_pairs

    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    examples, counts = training_pairs(ctx, spec.data, spec.on_policy, model, method="ORPO")
    config = ORPOConfig(
        **common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune),
        max_length=spec.train.max_length,
        beta=spec.beta,
        remove_unused_columns=False,  # the pair collator needs the chosen_/rejected_ columns
    )
    trainer = ORPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=ctx.tokenizer,
        peft_config=None if spec.full_finetune else lora_config(spec.lora),
        callbacks=ctx.callbacks,
    )
    result = train_and_save(ctx, trainer, full_finetune=spec.full_finetune)
    if counts is not None:
        result.metrics.update(counts.as_metrics())
    return result


def held_out_objective(ctx: StageContext, spec: ORPOStage, trained: Any) -> HeldOutObjective | None:
    """Preference accuracy and margin (per-token log-probability, chosen − rejected) on held-out pairs.

    ORPO's odds ratio is built from per-token log-probabilities, so that is
    the scale measured; `chosen_logp_per_token` tracks its SFT term. Empty
    when the dataset has no held-out split, or with `on_policy` (the held-out
    split is prompts, with no pairs to measure).
    """
    from posttrain.stagekit.objective import before_and_after, held_out_rows
    from posttrain.training.objectives import per_token_preference

    rows = [] if spec.on_policy else held_out_rows(ctx, spec.data)
    if not rows:
        return None
    return before_and_after(
        ctx, trained, lambda model: per_token_preference(model, ctx.tokenizer, rows, max_length=spec.train.max_length),
        rows=len(rows),
    )


def _data_kinds(raw: Mapping[str, Any]) -> DataNeed:
    # With on_policy the pairs are sampled from a prompt dataset.
    return (("prompt",), "") if raw.get("on_policy") else (("preference",), "")


STAGE = StageType(
    name="orpo", spec=ORPOStage, run=run, data_kinds=("preference",), data_kinds_for=_data_kinds,
    held_out_objective=held_out_objective,
    panels=(Panel("reward margin (chosen − rejected, β·mean log p)", ("rewards/margins",)),
            Panel("preference accuracy", ("rewards/accuracies",)),
            Panel("log odds ratio (chosen vs rejected)", ("log_odds_ratio",)),
            Panel("SFT loss on chosen", ("nll_loss",))),
)
