"""Group relative policy optimization with TRL's GRPOTrainer and a LoRA.

Each prompt is answered `num_generations` times; the recipe's rewards score
the answers and each one is pushed up or down by how it compares with its
group. TRL logs `reward` and `rewards/<name>/mean|std` per step, which the
pipeline's MetricsFile callback writes to metrics.jsonl.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from posttrain.errors import UserError
from posttrain.fingerprint import NEUTRAL_AT_DEFAULT
from posttrain.stagekit import HeldOutObjective, Panel, StageContext, StageResult, StageType
from posttrain.stagekit.objective import held_out_rows, input_model
from posttrain.stagekit.specs import RewardSpec, StageCommon, Strict


class Rollouts(Strict):
    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto",
        description="Where GRPO's completions come from. auto: a LoRA policy generates from a copy of its base with "
        "the adapter merged in, synced every step (one matmul per layer instead of three; the loss still uses the "
        "trainer's own weights); otherwise, and with `hf`, TRL's generate on the training model itself. vllm: a "
        "vLLM server (the engine's own virtualenv, `make engines`) serves the input model and reloads the LoRA "
        "adapter every step; TRL's importance-sampling correction (vllm_importance_sampling_*) weighs its samples.",
    )
    max_model_len: PositiveInt = Field(2048, description="vllm: longest prompt + completion the server accepts.")


class GRPOStage(StageCommon):
    type: Literal["grpo"]
    rewards: list[RewardSpec] = Field(min_length=1, description="Reward functions and their weights.")
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the GRPO group).")
    max_completion_length: PositiveInt = Field(64, description="Longest generated completion, in tokens.")
    beta: float = Field(0.0, ge=0.0, description="KL coefficient toward the input model (0: no reference).")
    loss_type: str | None = Field(None, description="TRL GRPO loss type (grpo, dr_grpo, dapo, bnpo, ...).")
    temperature: PositiveFloat = Field(1.0, description="Sampling temperature during training.")
    rollouts: Rollouts = Field(
        default_factory=Rollouts, description="How rollouts are generated.", json_schema_extra=NEUTRAL_AT_DEFAULT
    )
    use_vllm: bool | Literal["auto"] = Field(
        "auto", description="Generate with vLLM (auto: when installed and a GPU is present), else HF generate."
    )


def run(ctx: StageContext, spec: GRPOStage) -> StageResult:
    from trl import GRPOConfig

    from data_prep import read_rows
    from posttrain.training.arguments import common_arguments
    from posttrain.training.grpo_trainer import PosttrainGRPOTrainer
    from posttrain.training.lora import lora_config
    from posttrain.training.outputs import train_and_save
    from posttrain.training.scoring import check_columns, load_rewards
    from posttrain.training.vllm_rollouts import engine_rollouts

    rows = read_rows(ctx.dataset(spec.data).train_path)
    if not rows:
        raise UserError(f"dataset {spec.data!r} has no rows left after curation; GRPO needs prompts")
    rewards = load_rewards(spec.rewards, base_dir=ctx.base_dir)
    columns = set().union(*(row.keys() for row in rows)) - {"prompt"}
    check_columns(rewards, columns, spec.data)

    processes = int(os.environ.get("WORLD_SIZE", "1"))  # under `accelerate launch`: grad_accum is per process
    per_device, steps_per_generation = batch_layout(
        spec.train.batch_size, spec.train.grad_accum, spec.num_generations, processes=processes
    )
    if steps_per_generation != spec.train.grad_accum:
        ctx.console.print(
            f"grpo: {spec.num_generations} generations per prompt; one generation batch spans "
            f"{steps_per_generation} micro-batches of {per_device} completions"
        )
    vllm = wants_vllm(spec.use_vllm)
    extra: dict[str, Any] = {"loss_type": spec.loss_type} if spec.loss_type else {}
    model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
    if vllm:
        share = colocated_engine_share(ctx, spec, model, rows, per_device * steps_per_generation)
        extra.update(vllm_mode="colocate", vllm_gpu_memory_utilization=share)
    config = GRPOConfig(
        **{**common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune), "per_device_train_batch_size": per_device},
        steps_per_generation=steps_per_generation,
        num_generations=spec.num_generations,
        max_completion_length=spec.max_completion_length,
        temperature=spec.temperature,
        beta=spec.beta,
        reward_weights=[r.weight for r in rewards],
        use_vllm=vllm,
        log_completions=False,
        **extra,
    )
    with engine_rollouts(ctx, spec.rollouts.engine, rank=spec.lora.r, max_model_len=spec.rollouts.max_model_len,
                         full_finetune=spec.full_finetune) as engine:
        trainer = PosttrainGRPOTrainer(
            model=model,
            rollout_engine=spec.rollouts.engine,
            vllm_rollouts=engine,
            reward_funcs=[r.fn for r in rewards],
            args=config,
            train_dataset=prompt_dataset(rows),
            processing_class=ctx.tokenizer,
            peft_config=None if spec.full_finetune else lora_config(spec.lora, model),
            callbacks=ctx.callbacks,
        )
        return train_and_save(ctx, trainer, full_finetune=spec.full_finetune)


def batch_layout(batch_size: int, grad_accum: int, num_generations: int, *, processes: int = 1) -> tuple[int, int]:
    """(per_device_train_batch_size, steps_per_generation) for TRL, both counted in completions.

    TRL samples one generation batch of per_device × processes ×
    steps_per_generation completions and needs it to hold whole prompt groups
    (a multiple of num_generations). We keep the recipe's batch_size as the
    micro-batch, since it is what bounds memory, and let a generation span as
    many whole optimizer steps as it takes to fill whole groups:
    lcm(batch per step, num_generations) completions, where the batch per step
    is batch_size × grad_accum × processes (`grad_accum` is each process's
    share under a launch). The generation batch is thus the same on any
    number of processes, and every combination is possible. batch_size 8,
    num_generations 4 → (8, 1): two prompts per step, one generation per
    step, fully on-policy.

    >>> batch_layout(8, 1, 4)
    (8, 1)
    >>> batch_layout(4, 1, 8)
    (4, 2)
    >>> batch_layout(6, 1, 4)
    (6, 2)
    >>> batch_layout(2, 1, 4, processes=2)  # as batch_layout(2, 2, 4): 4 completions per step, 1 step
    (2, 1)
    """
    per_step = batch_size * grad_accum * processes
    steps = num_generations // math.gcd(per_step, num_generations)
    return batch_size, grad_accum * steps


def colocated_engine_share(ctx: StageContext, spec: GRPOStage, model: Any, rows: list[dict], generation_batch: int) -> float:
    """vLLM's share of this GPU for a colocated engine, from the model, batch and lengths (engine_memory.py);
    a UserError before any loading when trainer and engine cannot both fit."""
    import torch

    from posttrain.training.engine_memory import ModelShape, colocated_split_or_error, plan_split

    def prompt_tokens(prompt: Any) -> int:
        text = prompt if isinstance(prompt, str) else ctx.tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True)
        return len(ctx.tokenizer(text, add_special_tokens=False)["input_ids"])

    shape = ModelShape.from_config(model.config, sum(p.numel() for p in model.parameters()))
    # A LoRA on every linear: about 7 matrices per layer of (hidden + out) × r, roughly 2 × hidden × r each.
    trainable = shape.params if spec.full_finetune else 2 * 7 * shape.layers * shape.hidden * spec.lora.r
    split = plan_split(
        shape, total_bytes=torch.cuda.get_device_properties(0).total_memory, train_rows=spec.train.batch_size,
        prompt_tokens=max(prompt_tokens(row["prompt"]) for row in rows[:2000]),
        completion_tokens=spec.max_completion_length, generation_sequences=generation_batch, trainable=trainable,
        lora_rank=0 if spec.full_finetune else spec.lora.r, gradient_checkpointing=spec.train.gradient_checkpointing,
        dtype_bytes=next(model.parameters()).element_size(),
    )
    ctx.console.print(f"grpo: colocated vLLM gets {split.engine_fraction:.0%} of the GPU "
                      f"(engine ≈ {split.engine / 2**30:.1f} GiB, trainer ≈ {split.trainer / 2**30:.1f} GiB)")
    return colocated_split_or_error(split, stage=spec.name)


def wants_vllm(setting: bool | str) -> bool:
    """`auto`: vLLM only where it can run (installed, and a GPU); else HF generate."""
    import torch

    if setting == "auto":
        return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if setting and importlib.util.find_spec("vllm") is None:
        raise UserError("use_vllm: true, but vllm is not installed (pip install vllm, or use_vllm: auto)")
    return bool(setting)


def prompt_dataset(rows: list[dict[str, Any]]) -> Any:
    """A Dataset of prompt rows; every column present on every row (None where a row lacks it).

    `Dataset.from_list` takes its columns from the first row only, so a
    mixed file (math rows with `answer`, instruction rows with `constraints`)
    would silently lose a column without this.
    """
    from datasets import Dataset

    keys = list(dict.fromkeys(k for row in rows for k in row))
    return Dataset.from_list([{k: row.get(k) for k in keys} for row in rows])


def held_out_objective(ctx: StageContext, spec: GRPOStage, trained: Any) -> HeldOutObjective | None:
    """Mean reward per reward function (and weighted total) of greedy replies to the held-out prompts.

    Greedy rather than sampled: one deterministic reply per prompt, the same
    length limit as training, so before and after differ only by the model.
    """
    from posttrain.training.objectives import PerRow, greedy_replies, objective_of, reward_means
    from posttrain.training.scoring import load_rewards

    rows = held_out_rows(ctx, spec.data)
    if not rows:
        return None
    rewards = load_rewards(spec.rewards, base_dir=ctx.base_dir)
    prompts = [row["prompt"] for row in rows]

    def measure(model: Any) -> dict[str, PerRow]:
        replies = greedy_replies(model, ctx.tokenizer, prompts, max_new_tokens=spec.max_completion_length)
        return reward_means(rewards, rows, replies)

    with input_model(ctx, trained) as before:
        measured_before = measure(before)
    return objective_of(measured_before, measure(trained), rows=len(rows))


STAGE = StageType(
    name="grpo", spec=GRPOStage, run=run, data_kinds=("prompt",), held_out_objective=held_out_objective,
    panels=(Panel("reward (total and per function)", ("reward", "rewards/*/mean")),
            Panel("KL to reference", ("kl",), when_absent="no KL logged (beta 0: no reference model)"),
            Panel("completion length (mean tokens)", ("completions/mean_length",))),
)
