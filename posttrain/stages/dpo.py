"""Direct preference optimization with TRL's DPOTrainer and a LoRA.

The reference model is the stage's input model: TRL evaluates it by switching
the new adapter off, and the input's own adapters are already merged into the
weights, so after SFT the reference is the SFT model, not the base.

With `on_policy`, the stage's data is a prompt dataset and the pairs are
made first from the input model's own samples (training/pairs.py `on_policy_pairs`,
shared with the other pairwise stages); they are written to pairs.jsonl, which a
resumed run of the same stage reuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, PositiveFloat, field_validator

from posttrain.stagekit import HeldOutObjective, StageContext, StageResult, StageType
from posttrain.stagekit.declaration import DataNeed
from posttrain.stagekit.display import Panel
from posttrain.stagekit.objective import held_out_rows, input_model
from posttrain.stagekit.specs import OnPolicyPairs, StageCommon

DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft",
)  # fmt: skip


class DPOStage(StageCommon):
    type: Literal["dpo"]
    beta: PositiveFloat = Field(0.1, description="Strength of the KL pull toward the reference (input) model.")
    loss_type: str | list[str] = Field("sigmoid", description="TRL DPO loss type(s), passed through.")
    loss_weights: list[float] | None = Field(None, description="Weights when several loss types are combined.")
    on_policy: OnPolicyPairs | None = Field(
        None,
        description="Build pairs from a prompt dataset: sample from the input model, keep best vs worst "
        "by reward (ties skipped). Without it, `data` must be preference pairs.",
    )

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, value: str | list[str]) -> str | list[str]:
        unknown = [v for v in ([value] if isinstance(value, str) else value) if v not in DPO_LOSS_TYPES]
        if unknown:
            raise ValueError(f"unknown DPO loss_type {unknown}; known: {', '.join(DPO_LOSS_TYPES)}")
        return value


def run(ctx: StageContext, spec: DPOStage) -> StageResult:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from posttrain.training.arguments import common_arguments
    from posttrain.training.lora import lora_config
    from posttrain.training.outputs import train_and_save
    from posttrain.training.pairs import training_pairs

    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    examples, counts = training_pairs(ctx, spec.data, spec.on_policy, model, method="DPO")
    train_dataset = Dataset.from_list(examples)

    config = DPOConfig(
        **common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune),
        max_length=spec.train.max_length,
        beta=spec.beta,
        loss_type=spec.loss_type if isinstance(spec.loss_type, list) else [spec.loss_type],
        loss_weights=spec.loss_weights,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=train_dataset,
        processing_class=ctx.tokenizer,
        peft_config=None if spec.full_finetune else lora_config(spec.lora),
        callbacks=ctx.callbacks,
    )
    result = train_and_save(ctx, trainer, full_finetune=spec.full_finetune)
    if counts is not None:
        result.metrics.update(counts.as_metrics())
    return result


def held_out_objective(ctx: StageContext, spec: DPOStage, trained: Any) -> HeldOutObjective | None:
    """Preference accuracy and margin on held-out pairs, the input model being DPO's reference.

    With `on_policy`, the held-out pairs are sampled from the input model on
    the held-out prompts exactly as the training pairs were (cached in
    heldout_pairs.jsonl, which lives and dies with the stage folder).
    """
    from posttrain.training.objectives import (
        completion_logps,
        encode_completion,
        objective_of,
        preference_stats,
    )

    length, pad_id = spec.train.max_length, ctx.tokenizer.pad_token_id

    def logps(model: Any, rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
        chosen = [encode_completion(ctx.tokenizer, r["prompt"], r["chosen"], max_length=length) for r in rows]
        rejected = [encode_completion(ctx.tokenizer, r["prompt"], r["rejected"], max_length=length) for r in rows]
        both = completion_logps(model, chosen + rejected, pad_id=pad_id)
        return [s for s, _ in both[: len(rows)]], [s for s, _ in both[len(rows) :]]

    with input_model(ctx, trained) as reference:
        rows = _held_out_pairs(ctx, spec, reference)
        if not rows:
            return None
        ref_chosen, ref_rejected = logps(reference, rows)
    policy_chosen, policy_rejected = logps(trained, rows)
    return objective_of(
        preference_stats(ref_chosen, ref_rejected, ref_chosen, ref_rejected, beta=spec.beta),
        preference_stats(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=spec.beta),
        rows=len(rows),
        notes=["reward_*: DPO's implicit reward vs the input model (0 before, by definition); "
               "logp_*: log p(chosen) − log p(rejected) of the model itself"],
    )


def _held_out_pairs(ctx: StageContext, spec: DPOStage, reference: Any) -> list[dict[str, Any]]:
    """The held-out preference rows, or with `on_policy` pairs sampled from `reference` on the held-out prompts."""
    from data_prep import read_rows
    from data_prep.rows import write_jsonl
    from posttrain.training.pairs import build_pairs, sample_completions
    from posttrain.training.scoring import load_rewards

    rows = held_out_rows(ctx, spec.data)
    if spec.on_policy is None or not rows:
        return rows
    cache = ctx.stage_dir / "heldout_pairs.jsonl"
    if cache.exists():
        return read_rows(cache)
    sampling = spec.on_policy
    samples = sample_completions(
        reference, ctx.tokenizer, [row["prompt"] for row in rows], samples=sampling.samples,
        max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature, seed=ctx.seed,
    )
    pairs, _ = build_pairs(rows, samples, load_rewards(sampling.rewards, base_dir=ctx.base_dir))
    write_jsonl(cache, pairs)
    return pairs


def _data_kinds(raw: Mapping[str, Any]) -> DataNeed:
    # With on_policy the pairs are sampled from a prompt dataset.
    return (("prompt",), "") if raw.get("on_policy") else (("preference",), "")


STAGE = StageType(
    name="dpo", spec=DPOStage, run=run, data_kinds=("preference",), data_kinds_for=_data_kinds,
    held_out_objective=held_out_objective,
    panels=(Panel("reward margin (chosen − rejected)", ("rewards/margins",)),
            Panel("preference accuracy", ("rewards/accuracies",))),
)
