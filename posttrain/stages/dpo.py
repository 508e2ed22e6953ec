"""Direct preference optimization with TRL's DPOTrainer and a LoRA.

The reference model is the stage's input model: TRL evaluates it by switching
the new adapter off, and the input's own adapters are already merged into the
weights, so after SFT the reference is the SFT model, not the base.

With `on_policy`, the stage's data is a prompt dataset and the pairs are
made first from the input model's own samples (training/pairs.py); they are
written to pairs.jsonl, which a resumed run of the same stage reuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal

from pydantic import Field, PositiveFloat, field_validator

from posttrain.errors import UserError
from posttrain.stagekit import StageContext, StageResult, StageType
from posttrain.stagekit.declaration import DataNeed
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

    from data_prep import read_rows
    from posttrain.training.arguments import common_arguments
    from posttrain.training.lora import lora_config
    from posttrain.training.outputs import train_and_save

    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    counts = None
    if spec.on_policy is None:
        rows = read_rows(ctx.dataset(spec.data).train_path)
    else:
        rows, counts = on_policy_pairs(ctx, spec.data, spec.on_policy, model)
    train_dataset = Dataset.from_list([preference_example(row) for row in rows])

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


def on_policy_pairs(
    ctx: StageContext, data: str, spec: OnPolicyPairs, model: Any
) -> tuple[list[dict[str, Any]], Any]:
    """Preference rows sampled from `model` on the prompts of `data`, or those of an earlier try.

    The stage folder is wiped whenever the stage's fingerprint changes, so a
    pairs file found there was made from the same model, prompts and settings.
    """
    import torch

    from data_prep import read_rows
    from data_prep.rows import write_jsonl
    from posttrain.training.pairs import PairCounts, build_pairs, sample_completions
    from posttrain.training.scoring import check_columns, load_rewards

    pairs_path, counts_path = ctx.stage_dir / "pairs.jsonl", ctx.stage_dir / "pairs.json"
    if pairs_path.exists() and counts_path.exists():
        counts = PairCounts(**json.loads(counts_path.read_text()))
        ctx.console.print(f"reusing {counts.pairs} on-policy pairs from {pairs_path}")
        return read_rows(pairs_path), counts

    prompts = read_rows(ctx.dataset(data).train_path)
    rewards = load_rewards(spec.rewards, base_dir=ctx.base_dir)
    check_columns(rewards, set().union(*(row.keys() for row in prompts)) - {"prompt"}, data)
    if torch.cuda.is_available():
        model.to("cuda")
    with ctx.console.status(f"sampling {spec.samples} completions for each of {len(prompts)} prompts..."):
        samples = sample_completions(
            model, ctx.tokenizer, [row["prompt"] for row in prompts], samples=spec.samples,
            max_new_tokens=spec.max_new_tokens, temperature=spec.temperature, seed=ctx.seed,
        )
    pairs, counts = build_pairs(prompts, samples, rewards)
    ctx.console.print(
        f"on-policy pairs: {counts.prompts} prompts → {counts.pairs} pairs kept, {counts.ties} ties skipped"
        + (f", {counts.unscored} with no applicable reward" if counts.unscored else "")
    )
    if not pairs:
        raise UserError(
            f"on-policy DPO: all {counts.prompts} prompts gave tied samples, so there is no pair to learn from; "
            "raise on_policy.samples or temperature, or use a reward that separates answers more finely"
        )
    write_jsonl(pairs_path, pairs)
    counts_path.write_text(json.dumps(asdict(counts)) + "\n")
    return pairs, counts


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


def _data_kinds(raw: Mapping[str, Any]) -> DataNeed:
    # With on_policy the pairs are sampled from a prompt dataset.
    return (("prompt",), "") if raw.get("on_policy") else (("preference",), "")


STAGE = StageType(name="dpo", spec=DPOStage, run=run, data_kinds=("preference",), data_kinds_for=_data_kinds)
