"""Spec building blocks every stage type shares: model, LoRA, optimizer, rewards, evaluation.

Each field is documented once, here, in its `description`; a stage type's own
fields live in its stage module (posttrain/stages/<type>.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
)

from posttrain.fingerprint import NEUTRAL_AT_DEFAULT


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
    quantize: Literal["4bit"] | None = Field(
        None,
        description="4bit: QLoRA. Training stages load their input in NF4 (bitsandbytes) with the LoRA on "
        "top; lineages, evaluation and export use the dequantized base, so merges never go into 4-bit weights.",
    )
    chat_template: str | None = Field(
        None, json_schema_extra=NEUTRAL_AT_DEFAULT,
        description="The chat format for a base model without one (or to replace one): chatml, llama3, gemma, "
        "mistral (shipped), or a .jinja file (relative to the recipe's folder). Used for training, evaluation and "
        "every export; the special tokens it needs are added to the tokenizer and trained, and its end-of-turn "
        "token becomes the model's eos.",
    )

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        from posttrain.models.chat_template import template_problem

        if value is not None and (problem := template_problem(value, (info.context or {}).get("base_dir"))):
            raise ValueError(problem)
        return value


class LoraSpec(Strict):
    r: PositiveInt = Field(16, description="LoRA rank.")
    alpha: PositiveFloat | None = Field(None, description="LoRA alpha; default 2*r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module name suffixes to adapt (q_proj, v_proj, ...) or all-linear."
    )
    experts: bool = Field(
        True, json_schema_extra=NEUTRAL_AT_DEFAULT,
        description="On mixture-of-experts models: adapt the experts' weights too (PEFT's parameter wrappers, "
        "which take no dropout: dropout is then 0), or false to adapt attention and the router only.",
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


class PairwiseCommon(StageCommon):
    """What every pairwise preference stage (dpo, orpo, simpo) shares: its data is pairs, or prompts to pair on."""

    on_policy: OnPolicyPairs | None = Field(
        None,
        description="Build pairs from a prompt dataset: sample from the input model, keep best vs worst "
        "by reward (ties skipped). Without it, `data` must be preference pairs.",
    )


def _absolute(value: str, info: ValidationInfo) -> str:
    """A recipe-relative path made absolute, so the spec means the same files from any working directory."""
    from pathlib import Path

    base_dir = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() or base_dir is None else (Path(base_dir) / path).resolve())


class EvalTask(Strict):
    task: str = Field(description="lm-eval task or group: shipped suite, an `include` folder, or lm-eval's registry.")
    data_files: str | dict[str, str] | None = Field(
        None,
        description="Run the task on local data instead of its hub dataset (same prompt, filters, metrics): "
        "one file for the split the task scores, or {split: file} (add `train` for few-shot); relative to the "
        "recipe; JSONL/JSON in the dataset's own format.",
    )
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][\w.@-]*$",
        description="Name on the leaderboard; default the task's, `<task>@<file stem>` with data_files.",
    )
    num_fewshot: NonNegativeInt | None = Field(None, description="Few-shot examples for this task only.")
    metric: str | None = Field(
        None, description="Headline metric (acc_norm, exact_match,flexible-extract); default the task's first."
    )

    @field_validator("data_files")
    @classmethod
    def _recipe_relative(cls, value: str | dict[str, str] | None, info: ValidationInfo) -> str | dict[str, str] | None:
        if isinstance(value, str):
            return _absolute(value, info)
        if isinstance(value, dict):
            return {split: _absolute(path, info) for split, path in value.items()}
        return value

    @property
    def label(self) -> str:
        """The leaderboard column of this entry."""
        if self.name:
            return self.name
        if self.data_files is None:
            return self.task
        from pathlib import Path

        first = self.data_files if isinstance(self.data_files, str) else next(iter(self.data_files.values()))
        return f"{self.task}@{Path(first).stem}"


class EvalSpec(Strict):
    tasks: list[str | EvalTask] = Field(
        default_factory=lambda: ["pt_arith", "pt_arith_mc"],
        description="lm-eval tasks or groups: the shipped suite (eval/tasks: pt_arith, pt_arith_mc, pt_ifeval, "
        "posttrain), folders listed in `include`, or lm-eval's registry (gsm8k, arc_easy, mmlu_*, leaderboard); "
        "an entry {task, data_files} runs a registry task on a local copy of its data.",
    )
    include: list[str] = Field(
        default_factory=list, description="Folders of your own lm-eval task YAMLs (relative to the recipe)."
    )
    limit: PositiveInt | None = Field(100, description="Documents per task (None: all).")
    num_fewshot: NonNegativeInt | None = Field(None, description="Few-shot examples for every task (None: each task's own).")
    gen_kwargs: dict[str, str | int | float | bool] | None = Field(
        None, description="Generation settings passed to lm-eval for generate_until tasks (max_gen_toks, ...)."
    )
    batch_size: PositiveInt = Field(8, description="Eval batch size.")
    on_base: bool = Field(True, description="Also evaluate the base model, for the leaderboard's deltas.")
    num_processes: PositiveInt = Field(
        1, description="Processes that share each evaluation's documents (data-parallel lm-eval under "
        "`accelerate launch`, one per GPU, gloo on CPU). Not part of the evaluation's cache key: the documents and "
        "the scores are the same as with 1 (bit for bit at batch_size 1; at larger batch sizes log-likelihoods "
        "can differ in the 7th digit, since a document is batched with other neighbours).",
    )

    @field_validator("include")
    @classmethod
    def _recipe_relative(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return [_absolute(v, info) for v in value]

    @property
    def task_labels(self) -> list[str]:
        """The entries as named on screen (a local-data entry by its leaderboard name)."""
        return [t if isinstance(t, str) else t.label for t in self.tasks]


REFERENCE_KEYS = ("reference", "ref_model", "reference_model", "ref")


def refuse_reference(data: Any, *, method: str, why: str) -> Any:
    """For a reference-free method's `mode="before"` validator: a reference key gets a message, not just
    "unknown key"."""
    given = [k for k in REFERENCE_KEYS if isinstance(data, Mapping) and k in data]
    if given:
        raise ValueError(
            f"`{given[0]}`: {method} is reference-free ({why}), so it takes no reference model; remove the key "
            "(use type dpo or kto to train against a reference)"
        )
    return data
