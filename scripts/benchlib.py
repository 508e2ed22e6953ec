"""Shared pieces of scripts/bench_sft.py and scripts/bench_generate.py: models, data, machine load."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

# Random-init models of real shapes for GPU runs (hidden, MLP, layers, heads, kv heads, vocab).
SHAPES: dict[str, dict[str, Any]] = {
    # For dry runs of the GPU checks on a CPU (scripts/gpu_check.sh --dry-run): seconds per step.
    "tiny": dict(
        model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=2048,
    ),
    "qwen2.5-0.5b": dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768,
    ),
    "llama3.2-1b": dict(
        model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=8192,
    ),
}

# Dense bf16 peak FLOP/s by GPU name fragment (vendor datasheets, without sparsity).
GPU_BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def embedded_model_path() -> str:
    from posttrain.models.resolve import resolve_model

    return resolve_model("smollm2-135m-instruct").path


def random_model_dir(shape: str, out: Path, tokenizer_path: str) -> str:
    """Save a random-init model of `shape` (bf16, like real checkpoints) with the embedded model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    settings = dict(SHAPES[shape])
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(out)
    return str(out)


def quickstart_chats(limit: int) -> list[list[dict[str, str]]]:
    """Well-formed conversations of the quickstart's raw chat mix (it also holds broken rows on purpose)."""
    path = Path(__file__).resolve().parents[1] / "data" / "quickstart" / "raw_chat.jsonl"
    chats = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        messages = row.get("messages") if isinstance(row, dict) else None
        if (
            isinstance(messages, list) and len(messages) >= 2
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"] for m in messages)
            and messages[-1].get("role") == "assistant"
        ):
            chats.append(messages)
    return chats[:limit]


def synthetic_chats(count: int, mean_tokens: int, max_tokens: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Conversations of random words, lengths log-normal around `mean_tokens` (an SFT-like mix with a long tail)."""
    rng = random.Random(seed)
    words = ["the", "a", "of", "to", "and", "in", "is", "for", "on", "with", "that", "by", "this", "model", "data", "token", "train", "step", "loss", "value"]
    chats = []
    sigma = 0.8
    mu = math.log(mean_tokens) - sigma**2 / 2
    for _ in range(count):
        n = min(max_tokens - 16, max(24, int(rng.lognormvariate(mu, sigma))))
        prompt_words = max(4, n // 4)
        chats.append([
            {"role": "user", "content": " ".join(rng.choice(words) for _ in range(prompt_words))},
            {"role": "assistant", "content": " ".join(rng.choice(words) for _ in range(n - prompt_words))},
        ])
    return chats


def sync() -> None:
    """Wait for the GPU's queued work, so wall-clock timers measure it; nothing on a CPU."""
    import torch  # here, so the summary table (scripts/gpu_check.sh) starts without it

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_bytes() -> int:
    """This process's peak memory: the GPU's max_memory_allocated, or on a CPU the peak RSS (model loading included)."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summary_table(paths: list[str]) -> str:
    """One table of the rows the benches wrote with `--json`: check, configuration, tokens/s, MFU, peak memory."""
    rows = [row for path in paths for row in json.loads(Path(path).read_text())]
    lines = [f"{'check':<6}{'configuration':<28}{'tokens/s':>10}{'MFU':>8}{'peak MB':>10}", "-" * 62]
    for row in rows:
        mfu = f"{row['mfu']:.1%}" if row.get("mfu") is not None else "—"
        lines.append(f"{row['check']:<6}{row['config']:<28}{row['tokens_per_s']:>10.0f}{mfu:>8}{row['peak_mb']:>10.0f}")
    return "\n".join(lines)
