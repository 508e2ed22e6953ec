"""Spec building blocks every stage type shares: model, LoRA, optimizer, rewards, evaluation.

Each field is documented once, here, in its `description`; a stage type's own
fields live in its stage module (posttrain/stages/<type>.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationInfo, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Strict):
    base: str = Field(
        description="Alias (smollm2-135m-instruct), hub id (org/name), local HF folder or .gguf file."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights dtype; auto = bf16 where the device multiplies bf16 fast (GPU, CPU with AMX or "
        "AVX512-BF16) for LoRA bases and generation, fp32 for full fine-tunes on CPU and for exports.",
    )
    trust_remote_code: bool = Field(False, description="Run the model repo's own Python code (off: safer).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    prefer_hub: bool = Field(
        False, description="For aliases: load the hub repo instead of the weights embedded in a package."
    )


class LoraSpec(Strict):
    r: PositiveInt = Field(16, description="LoRA rank.")
    alpha: PositiveFloat | None = Field(None, description="LoRA alpha; default 2*r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module name suffixes to adapt (q_proj, v_proj, ...) or all-linear."
    )


class TrainSpec(Strict):
    max_steps: int = Field(-1, description="Optimizer steps; -1 trains for `epochs` instead.")
    epochs: PositiveFloat = Field(1.0, description="Passes over the data when max_steps is -1.")
    lr: PositiveFloat = Field(2e-4, description="Peak learning rate.")
    batch_size: PositiveInt = Field(8, description="Per-device batch size.")
    grad_accum: PositiveInt = Field(1, description="Gradient accumulation steps.")
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of steps spent warming up the lr.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: PositiveFloat = Field(1.0, description="Gradient clipping norm.")
    max_length: PositiveInt = Field(512, description="Longest tokenized example; longer ones are truncated.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    logging_steps: PositiveInt = Field(5, description="Log loss/lr to metrics.jsonl every N steps.")
    save_steps: PositiveInt = Field(50, description="Checkpoint every N steps (a killed run resumes there).")
    optim: str = Field("adamw_torch", description="Optimizer name as transformers knows it.")


StageName = Annotated[str, Field(pattern=r"^[A-Za-z][\w-]*$")]


class StageCommon(Strict):
    name: StageName = Field(description="Unique stage name; names the stage's folder in the run directory.")
    after: str | None = Field(
        None,
        description="Stage whose output model this one starts from; default the previous stage, "
        "`base` for the base model.",
    )
    data: str = Field(description="Name of a dataset declared under `datasets`.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA settings.")
    full_finetune: bool = Field(False, description="Train all weights instead of a LoRA (starts a new lineage).")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Optimizer and schedule.")
    evaluate: bool = Field(True, description="Run the recipe's eval suite on this stage's model.")


class RewardSpec(Strict):
    fn: str = Field(
        description="Reward function: a built-in name (exact_number), module:function "
        "(rewards.math:exact_number) or path/to/file.py:function (relative to the recipe)."
    )
    weight: float = Field(1.0, description="Weight of this reward in the sum GRPO optimizes.")

    @field_validator("fn")
    @classmethod
    def _resolvable(cls, value: str, info: ValidationInfo) -> str:
        from rewards import resolve_reward

        base_dir = (info.context or {}).get("base_dir")
        resolve_reward(value, base_dir=base_dir)  # ValueError -> a recipe problem at this YAML path
        return value


class OnPolicyPairs(Strict):
    samples: int = Field(4, ge=2, description="Completions sampled per prompt from the stage's input model.")
    rewards: list[RewardSpec] = Field(min_length=1, description="Rewards that rank the samples.")
    max_new_tokens: PositiveInt = Field(96, description="Longest sampled completion.")
    temperature: PositiveFloat = Field(1.0, description="Sampling temperature.")


class EvalSpec(Strict):
    tasks: list[str] = Field(
        default_factory=lambda: ["pt_arith", "pt_arith_mc"],
        description="lm-eval task or group names from the shipped suite (eval/tasks: pt_arith, pt_arith_mc, pt_ifeval, posttrain).",
    )
    limit: PositiveInt | None = Field(100, description="Documents per task (None: all).")
    batch_size: PositiveInt = Field(8, description="Eval batch size.")
    on_base: bool = Field(True, description="Also evaluate the base model, for the leaderboard's deltas.")
