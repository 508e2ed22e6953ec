"""SimPO: a length-normalized preference margin with no reference model.

The loss is −log σ(β·(ā_chosen − ā_rejected) − γ), where ā is the model's
mean log-probability per token of an answer (Meng et al. 2024): averaging
over tokens keeps long answers from winning by length, and γ asks for a
margin. TRL runs it through its CPO trainer (trl.experimental) with
`loss_type="simpo"`; `sft_weight` is CPO's `cpo_alpha` (0 = plain SimPO).
Reference-free like ORPO: a `reference` setting is refused.

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


class SimPOStage(StageCommon):
    type: Literal["simpo"]
    beta: PositiveFloat = Field(
        2.0, description="β: scale of the per-token log-probability margin (the SimPO paper uses 2 to 2.5)."
    )
    gamma: float = Field(
        0.5, ge=0.0, description="γ: target reward margin; TRL's `simpo_gamma` (the paper uses γ/β ≈ 0.3 to 0.5)."
    )
    sft_weight: float = Field(
        0.0, ge=0.0, description="Weight of an SFT loss on the chosen answer (CPO's `cpo_alpha`); 0 = plain SimPO."
    )
    on_policy: OnPolicyPairs | None = Field(
        None,
        description="Build pairs from a prompt dataset: sample from the input model, keep best vs worst "
        "by reward (ties skipped). Without it, `data` must be preference pairs.",
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_free(cls, data: Any) -> Any:
        return refuse_reference(data, method="SimPO", why="its margin is the model's own per-token log-probabilities")


def run(ctx: StageContext, spec: SimPOStage) -> StageResult:
    from datasets import Dataset

    # CPO (which runs SimPO) lives in trl.experimental, chosen knowingly; its import-time notice is noise.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from posttrain.training.arguments import common_arguments
    from posttrain.training.lora import lora_config
    from posttrain.training.outputs import train_and_save
    from posttrain.training.pairs import training_pairs

    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    examples, counts = training_pairs(ctx, spec.data, spec.on_policy, model, method="SimPO")
    config = CPOConfig(
        **common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune),
        max_length=spec.train.max_length,
        loss_type="simpo",
        beta=spec.beta,
        simpo_gamma=spec.gamma,
        cpo_alpha=spec.sft_weight,
        remove_unused_columns=False,  # the pair collator needs the chosen_/rejected_ columns
    )
    trainer = CPOTrainer(
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


def held_out_objective(ctx: StageContext, spec: SimPOStage, trained: Any) -> HeldOutObjective | None:
    """Preference accuracy and margin on held-out pairs, on SimPO's own scale (per-token log-probability).

    None when the dataset has no held-out split, or with `on_policy` (the
    held-out split is prompts, with no pairs to measure).
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
    name="simpo", spec=SimPOStage, run=run, data_kinds=("preference",), data_kinds_for=_data_kinds,
    held_out_objective=held_out_objective,
    panels=(Panel("reward margin (chosen − rejected, β·mean log p)", ("rewards/margins",)),
            Panel("preference accuracy", ("rewards/accuracies",))),
)
