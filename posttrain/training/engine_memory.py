"""How one GPU's memory splits between the trainer and a colocated rollout engine, and whether both fit.

A fixed fraction for the engine (TRL's `vllm_gpu_memory_utilization` defaults to 0.3) is wrong both
ways: a 0.5B policy with short completions needs a few GB of KV cache, an 8B policy with 4k-token
completions needs tens. The engine's share here is what it holds: its copy of the weights, the KV
cache of every sequence it generates at once at full length, the LoRA slot, and the sampler's
logits, plus a fixed allowance for CUDA graphs, kernels and allocator slack. The trainer's is its
weights, the adapter's fp32 weights + gradients + Adam moments, and the activations and logits of
its largest micro-batch. Estimates, not measurements: they size the engine and refuse a split that
cannot work before minutes of loading; the training memory pre-flight (preflight.py) still runs
the worst-case batch for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GiB = 2**30
ENGINE_OVERHEAD = 1.5 * GiB
"""vLLM's CUDA graphs, NCCL/cuBLAS workspaces and allocator slack: measured order of magnitude, not a bound."""
HEADROOM = 0.92
"""Share of the device both may plan to use together; the rest is fragmentation and the CUDA context."""


@dataclass(frozen=True)
class ModelShape:
    params: int
    layers: int
    hidden: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config: Any, params: int) -> ModelShape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(params=params, layers=config.num_hidden_layers, hidden=config.hidden_size,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
                   vocab=config.vocab_size)


def kv_cache_bytes(shape: ModelShape, *, sequences: int, tokens: int, dtype_bytes: int = 2) -> int:
    """Keys and values of `sequences` sequences of `tokens` tokens each, every layer.

    >>> qwen05 = ModelShape(params=494_000_000, layers=24, hidden=896, kv_heads=2, head_dim=64, vocab=151936)
    >>> kv_cache_bytes(qwen05, sequences=64, tokens=1024) / GiB  # 12 KiB per token
    0.75
    """
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * dtype_bytes * sequences * tokens


def engine_bytes(shape: ModelShape, *, sequences: int, tokens: int, lora_rank: int = 0, dtype_bytes: int = 2) -> int:
    """The rollout engine: weights, the KV cache of all `sequences` at `tokens`, one LoRA slot, sampler logits."""
    weights = shape.params * dtype_bytes
    # A LoRA slot on every linear of every layer, at most ~7 matrices of hidden × rank, A and B.
    lora = 2 * 7 * shape.layers * shape.hidden * lora_rank * dtype_bytes * 4 if lora_rank else 0
    sampler = sequences * shape.vocab * 4 * 2  # fp32 logits and their softmax for one decoding step
    return int(weights + kv_cache_bytes(shape, sequences=sequences, tokens=tokens, dtype_bytes=dtype_bytes)
               + lora + sampler + ENGINE_OVERHEAD)


def trainer_bytes(
    shape: ModelShape, *, rows: int, tokens: int, trainable: int, dtype_bytes: int = 2,
    gradient_checkpointing: bool = False, logit_tokens: int | None = None,
) -> int:
    """The trainer: frozen weights, fp32 adapter + gradients + Adam moments, activations and logits of a micro-batch.

    Activations: ~34 bytes × hidden per token per layer in 16-bit (attention and MLP inputs kept for the
    backward pass, the usual estimate for a transformer block with flash attention); with gradient
    checkpointing one hidden state per layer. The logits of `logit_tokens` per row (GRPO: the completion;
    default all) in fp32, three times (logits, log-softmax, gradient).
    """
    weights = shape.params * dtype_bytes
    adapter = trainable * 16
    per_token_layer = 2 * shape.hidden if gradient_checkpointing else 34 * shape.hidden
    activations = rows * tokens * shape.layers * per_token_layer
    logits = rows * (tokens if logit_tokens is None else logit_tokens) * shape.vocab * 4 * 3
    return int(weights + adapter + activations + logits)


@dataclass(frozen=True)
class Split:
    trainer: int
    engine: int
    total: int

    @property
    def fits(self) -> bool:
        return self.trainer + self.engine <= HEADROOM * self.total

    @property
    def engine_fraction(self) -> float:
        """What to pass as vLLM's gpu_memory_utilization: the engine's need, with a 10% margin, as a fraction."""
        return round(min(1.0, self.engine * 1.1 / self.total), 3)

    def message(self) -> str:
        return (f"trainer ≈ {self.trainer / GiB:.1f} GiB + rollout engine ≈ {self.engine / GiB:.1f} GiB "
                f"> {HEADROOM:.0%} of {self.total / GiB:.1f} GiB")


def plan_split(shape: ModelShape, *, total_bytes: int, train_rows: int, prompt_tokens: int, completion_tokens: int,
               generation_sequences: int, trainable: int, lora_rank: int, gradient_checkpointing: bool = False,
               dtype_bytes: int = 2) -> Split:
    """The trainer's and the engine's memory for a colocated GRPO stage on a device of `total_bytes`."""
    tokens = prompt_tokens + completion_tokens
    return Split(
        trainer=trainer_bytes(shape, rows=train_rows, tokens=tokens, trainable=trainable, dtype_bytes=dtype_bytes,
                              gradient_checkpointing=gradient_checkpointing, logit_tokens=completion_tokens),
        engine=engine_bytes(shape, sequences=generation_sequences, tokens=tokens, lora_rank=lora_rank,
                            dtype_bytes=dtype_bytes),
        total=total_bytes,
    )


def colocated_split_or_error(split: Split, *, stage: str) -> float:
    """vLLM's gpu_memory_utilization for this split, or a UserError saying why trainer and engine cannot share."""
    from posttrain.errors import UserError

    if not split.fits:
        raise UserError(
            f"stage {stage}: the trainer and a colocated vLLM cannot both fit on this GPU ({split.message()}). "
            "Lower train.batch_size or max_completion_length, set train.gradient_checkpointing: true, "
            "or run vLLM on its own GPU."
        )
    return split.engine_fraction
