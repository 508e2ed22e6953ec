"""Generation throughput in ONE run: plain HF `generate` against posttrain's inference path.

  a  plain HF: `AutoModelForCausalLM.from_pretrained(path)` (its checkpoint dtype: fp32 for the
     embedded model) and `model.generate`
  c  posttrain: the model as evaluation, on-policy pairs and GRPO rollouts get it,
     `materialize(Lineage(path), dtype="auto")` (bf16 where the device multiplies bf16 fast),
     and the same `generate` call

Same prompts (the quickstart's chat prompts), greedy, every row forced to `--new-tokens` new
tokens, so both produce the same number of tokens; rounds alternate a, c, a, c, ... and the first
round is not timed. Prints new tokens/s, peak memory (GPU: max_memory_allocated; CPU: RSS
high-water mark, for the whole process), c/a, and how many greedy tokens c shares with a.

CPU:  PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_generate.py
GPU:  PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/bench_generate.py --shape qwen2.5-0.5b --batch-size 64 \
          --new-tokens 256 --rounds 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib


@torch.no_grad()
def generate(model: Any, batch: Any, new_tokens: int, pad_id: int) -> tuple[torch.Tensor, float]:
    benchlib.sync()
    start = time.perf_counter()
    out = model.generate(
        **batch, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad_id
    )
    benchlib.sync()
    return out[:, batch["input_ids"].shape[1]:], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(benchlib.SHAPES), help="random-init model of this shape (GPU)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per configuration; the first is warmup")
    opts = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from posttrain.models.lineage import Lineage, materialize
    from posttrain.models.loading import default_device, load_tokenizer

    load_before = benchlib.machine_load()
    model_path = benchlib.embedded_model_path()
    if opts.shape:
        model_path = benchlib.random_model_dir(opts.shape, Path(tempfile.mkdtemp(prefix="bench_gen_")), model_path)
    tokenizer = load_tokenizer(model_path)
    chats = benchlib.quickstart_chats(opts.batch_size)
    texts = [tokenizer.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True) for c in chats]
    device = default_device()
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    batch = batch.to(device)

    models = {
        "a": AutoModelForCausalLM.from_pretrained(model_path).to(device).eval(),
        "c": materialize(Lineage(model_path), dtype="auto").to(device).eval(),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(opts.rounds):
        for name, model in models.items():
            outputs[name], seconds = generate(model, batch, opts.new_tokens, tokenizer.pad_token_id)
            times[name].append(seconds)

    gpu = torch.cuda.is_available()
    peak = benchlib.peak_memory_bytes()
    print(f"\ndevice: {torch.cuda.get_device_name() if gpu else f'CPU, {torch.get_num_threads()} threads'} | "
          f"load average before {load_before}, after {benchlib.machine_load()}")
    print(f"batch {opts.batch_size}, {opts.new_tokens} new tokens per row, greedy, {opts.rounds} rounds "
          f"(first untimed), process peak memory {peak / 2**20:.0f} MB")
    speed = {}
    for name, model in models.items():
        timed = times[name][1:] or times[name]
        speed[name] = opts.batch_size * opts.new_tokens * len(timed) / sum(timed)
        label = "a HF generate (defaults)" if name == "a" else "c posttrain (dtype auto)"
        print(f"{label:<28}{speed[name]:>9.0f} new tok/s   weights {model.dtype}")
    same = (outputs["a"] == outputs["c"]).float()
    first_diff = (same.cumprod(dim=1).sum(dim=1)).float().mean().item()
    print(f"c/a = {speed['c'] / speed['a']:.2f}x; greedy tokens equal to a: {same.mean().item():.0%}, "
          f"{first_diff:.1f} tokens on average before the first difference")


if __name__ == "__main__":
    main()
