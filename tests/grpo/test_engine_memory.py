"""The trainer/engine memory split of a colocated rollout engine, with the numbers of real shapes."""

from __future__ import annotations

import pytest

from posttrain.errors import UserError
from posttrain.training.engine_memory import (
    GiB,
    ModelShape,
    colocated_split_or_error,
    engine_bytes,
    kv_cache_bytes,
    plan_split,
)

QWEN_05B = ModelShape(params=494_000_000, layers=24, hidden=896, kv_heads=2, head_dim=64, vocab=151936)
LLAMA_8B = ModelShape(params=8_030_000_000, layers=32, hidden=4096, kv_heads=8, head_dim=128, vocab=128256)
H100 = 80 * GiB


def test_the_engine_share_grows_with_batch_and_length_not_a_fixed_fraction() -> None:
    small = plan_split(QWEN_05B, total_bytes=H100, train_rows=8, prompt_tokens=256, completion_tokens=256,
                       generation_sequences=64, trainable=8_800_000, lora_rank=16)
    long = plan_split(QWEN_05B, total_bytes=H100, train_rows=2, prompt_tokens=256, completion_tokens=4096,
                      generation_sequences=256, trainable=8_800_000, lora_rank=16)
    assert small.fits and long.fits
    assert small.engine_fraction < 0.05  # ~3 GiB of an 80 GiB card, where TRL's default reserves 0.3
    assert long.engine_fraction > 4 * small.engine_fraction
    # The KV cache is what grows: 256 sequences × 4352 tokens × 12 KiB per token.
    assert kv_cache_bytes(QWEN_05B, sequences=256, tokens=4352) == 256 * 4352 * 12288
    assert engine_bytes(QWEN_05B, sequences=1, tokens=1) > QWEN_05B.params * 2


def test_a_split_that_cannot_fit_is_refused_with_the_numbers() -> None:
    split = plan_split(LLAMA_8B, total_bytes=H100, train_rows=16, prompt_tokens=512, completion_tokens=4096,
                       generation_sequences=512, trainable=42_000_000, lora_rank=64)
    assert not split.fits
    with pytest.raises(UserError, match=r"cannot both fit .*GiB.*gradient_checkpointing"):
        colocated_split_or_error(split, stage="grpo")
    fitting = plan_split(LLAMA_8B, total_bytes=H100, train_rows=2, prompt_tokens=512, completion_tokens=1024,
                         generation_sequences=64, trainable=42_000_000, lora_rank=64, gradient_checkpointing=True)
    share = colocated_split_or_error(fitting, stage="grpo")
    assert 0.2 < share < 0.6  # 16 GB of bf16 weights + KV cache for 64 × 1.5k tokens
