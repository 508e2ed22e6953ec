"""What distillation bought: parameter counts and measured generation speed."""

from __future__ import annotations

import time
from typing import Any

import torch

BENCH_PROMPT = [{"role": "user", "content": "Write a short story about a robot who learns to count apples."}]


def count_params(model: Any) -> int:
    """Parameters, each tied tensor counted once (`parameters()` already deduplicates)."""
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def tokens_per_second(model: Any, tokenizer: Any, *, new_tokens: int = 32, batch_size: int = 4, repeats: int = 2) -> float:
    """Greedy decoding speed: `batch_size` copies of a fixed prompt, exactly `new_tokens` new tokens each.

    Forcing the length (min_new_tokens) makes the work the same for any model;
    the best of `repeats` timed runs, after one warm-up, is reported, because
    on a shared machine other processes only ever make a run slower.
    """
    was_training = model.training
    model.eval()
    text = tokenizer.apply_chat_template(BENCH_PROMPT, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer([text] * batch_size, return_tensors="pt", add_special_tokens=False).to(model.device)
    settings = dict(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
        pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )
    try:
        model.generate(**inputs, **{**settings, "max_new_tokens": 2, "min_new_tokens": 2})
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(**inputs, **settings)
            best = min(best, time.perf_counter() - start)
    finally:
        model.train(was_training)
    return batch_size * new_tokens / best
