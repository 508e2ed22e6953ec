"""The recipe schema: one pydantic model per section and per stage type.

Each field is documented once, here, in its `description`; `posttrain
validate` and the docs read it from the model. Unknown keys are errors.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from data_prep.spec import DatasetSpec


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Strict):
    base: str = Field(
        description="Alias (smollm2-135m-instruct), hub id (org/name), local HF folder or .gguf file."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype for training; auto = bf16 on a GPU that supports it, else fp32."
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


class SFTStage(StageCommon):
    type: Literal["sft"]
    packing: bool = Field(False, description="Pack several examples into each max_length sequence.")
    loss_on: Literal["completion", "all"] = Field(
        "completion", description="Train on the last assistant turn only, or on every token."
    )


DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft",
)  # fmt: skip


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


class GRPOStage(StageCommon):
    type: Literal["grpo"]
    rewards: list[RewardSpec] = Field(min_length=1, description="Reward functions and their weights.")
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the GRPO group).")
    max_completion_length: PositiveInt = Field(64, description="Longest generated completion, in tokens.")
    beta: float = Field(0.0, ge=0.0, description="KL coefficient toward the input model (0: no reference).")
    loss_type: str | None = Field(None, description="TRL GRPO loss type (grpo, dr_grpo, dapo, bnpo, ...).")
    temperature: PositiveFloat = Field(1.0, description="Sampling temperature during training.")
    use_vllm: bool | Literal["auto"] = Field(
        "auto", description="Generate with vLLM (auto: when installed and a GPU is present), else HF generate."
    )


class StudentSpec(Strict):
    model: str | None = Field(
        None, description="A smaller model sharing the teacher's tokenizer (alias, hub id or path)."
    )
    init: Literal["prune"] | None = Field(
        None, description="prune: build the student from the teacher by keeping a subset of its layers."
    )
    keep_layers: list[int] | None = Field(None, description="Teacher layer indices the pruned student keeps.")
    keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="Or: keep this fraction of layers, spread evenly (first and last kept)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> StudentSpec:
        if (self.model is None) == (self.init is None):
            raise ValueError("give exactly one of `model` (a smaller model) or `init: prune`")
        if self.init == "prune" and (self.keep_layers is None) == (self.keep_fraction is None):
            raise ValueError("`init: prune` needs exactly one of keep_layers or keep_fraction")
        return self


class DistillStage(StageCommon):
    type: Literal["distill"]
    teacher: str | None = Field(
        None, description="Teacher: a stage name, `base`, or a model reference; default this stage's input."
    )
    student: StudentSpec = Field(description="The student model, or how to make it from the teacher.")
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl",
        description="Token-level divergence: forward_kl = KL(teacher‖student), reverse_kl = KL(student‖teacher), "
        "jsd = generalized JSD with `beta`.",
    )
    beta: float = Field(
        0.5, ge=0.0, le=1.0,
        description="jsd only: weight of the teacher in the mixture (0.5 symmetric; 0 means forward KL, 1 reverse KL).",
    )
    lmbda: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of batches on student-generated text (GKD).")
    temperature: PositiveFloat = Field(
        1.0, description="Softmax temperature of both distributions (and of on-policy sampling); the loss is scaled by T²."
    )
    ce_weight: float = Field(0.0, ge=0.0, description="Weight of the plain cross-entropy on the data's answers.")
    sequence_kd: bool = Field(
        False, description="Sequence-level KD: the teacher writes the answers (greedy) the student trains on."
    )
    max_new_tokens: PositiveInt = Field(96, description="Longest generation (sequence KD, on-policy batches).")
    full_finetune: bool = Field(True, description="Train all student weights (the student starts a new lineage).")

    @field_validator("full_finetune")
    @classmethod
    def _full(cls, value: bool) -> bool:
        if not value:
            raise ValueError("a distilled student trains all its weights; LoRA distillation is not supported")
        return value


Stage = Annotated[SFTStage | DPOStage | GRPOStage | DistillStage, Field(discriminator="type")]


class EvalSpec(Strict):
    tasks: list[str] = Field(
        default_factory=lambda: ["pt_arith", "pt_arith_mc"],
        description="lm-eval task or group names from the shipped suite (eval/tasks: pt_arith, pt_arith_mc, pt_ifeval, posttrain).",
    )
    limit: PositiveInt | None = Field(100, description="Documents per task (None: all).")
    batch_size: PositiveInt = Field(8, description="Eval batch size.")
    on_base: bool = Field(True, description="Also evaluate the base model, for the leaderboard's deltas.")


class ExportSpec(Strict):
    formats: list[Literal["peft", "merged", "vllm", "gguf", "ollama"]] = Field(
        default_factory=lambda: ["peft", "merged"],
        description="peft: every stage's cumulative adapter on the base; merged: the last stage's full model; "
        "vllm: a checked `vllm serve` manifest; gguf: llama.cpp files (last stage); ollama: Modelfiles (last stage).",
    )


class Recipe(Strict):
    name: str = Field(description="Run name; the run directory is runs/<name>/.")
    seed: int = Field(42, description="Seed for data order, LoRA init and sampling.")
    model: ModelSpec = Field(description="The base model every lineage starts from.")
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict, description="Named datasets.")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="Benchmarks run after every stage.")
    stages: list[Stage] = Field(min_length=1, description="Stages, in order; each trains one model.")
    export: ExportSpec = Field(default_factory=ExportSpec, description="Artifacts written for serving engines.")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", value):
            raise ValueError("use letters, digits, '-', '_' or '.' (it names a folder)")
        return value


STAGE_TYPES: dict[str, type[StageCommon]] = {
    "sft": SFTStage, "dpo": DPOStage, "grpo": GRPOStage, "distill": DistillStage,
}
"""The stage type names a recipe may use, and the model that validates each."""
