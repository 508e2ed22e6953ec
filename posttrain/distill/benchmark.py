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
def tokens_per_second(
    models: dict[str, Any], tokenizer: Any, *, new_tokens: int = 24, batch_size: int = 4, repeats: int = 3
) -> dict[str, float]:
    """Greedy decoding speed of each model: `batch_size` copies of a fixed prompt, exactly `new_tokens` new tokens.

    Forcing the length (min_new_tokens) gives every model the same work. Each
    model is warmed up with one full run (the first decode of a process is
    much slower), then the models take turns and each keeps its best time:
    on a shared machine other processes only ever make a run slower, and
    taking turns exposes all models to the same bursts.
    """
    text = tokenizer.apply_chat_template(BENCH_PROMPT, add_generation_prompt=True, tokenize=False)
    modes = {name: model.training for name, model in models.items()}
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    best = dict.fromkeys(models, float("inf"))
    try:
        for round_ in range(repeats + 1):
            for name, model in models.items():
                model.eval()
                inputs = tokenizer([text] * batch_size, return_tensors="pt", add_special_tokens=False).to(model.device)
                start = time.perf_counter()
                model.generate(**inputs, **settings, pad_token_id=tokenizer.pad_token_id)
                if round_ > 0:  # round 0 is the warm-up
                    best[name] = min(best[name], time.perf_counter() - start)
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return {name: batch_size * new_tokens / seconds for name, seconds in best.items()}
