"""Held-out measurements of what a stage optimizes: completion log-probabilities, greedy replies, reward means.

Pure functions of a model, a tokenizer and rows; the stage modules combine
them into their `held_out_objective` (SFT loss, DPO preference accuracy and
margin, GRPO rewards, distillation divergence). Everything runs under
`torch.inference_mode` in small batches, so measuring a held-out split of a
few dozen rows costs seconds on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from posttrain.training.scoring import Reward

IGNORE_INDEX = -100
HELD_OUT_MAX_ROWS = 64
"""At most this many held-out rows are measured (the first ones of the shuffled split): a bounded cost."""

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Encoded:
    """One prompt + completion as token ids; `labels` is IGNORE_INDEX on the prompt."""

    input_ids: list[int]
    labels: list[int]


def encode_completion(tokenizer: Any, prompt: Messages, completion: str, *, max_length: int) -> Encoded:
    """The chat-templated conversation with `completion` as the assistant's answer; only its tokens are labels.

    The prompt is the template with the generation prompt, so the completion's
    tokens are what the model writes after it (end-of-turn marker included),
    as TRL's completion-only loss counts them. Truncated to `max_length`.
    """
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": completion}], tokenize=False
    )
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:  # a template that rewrites earlier turns: split on text length
        prompt_ids = full_ids[: len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])]
    full_ids = full_ids[:max_length]
    cut = min(len(prompt_ids), len(full_ids))
    return Encoded(full_ids, [IGNORE_INDEX] * cut + full_ids[cut:])


def batches(items: Sequence[Encoded], batch_size: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded tensors (input_ids, attention_mask, labels) of `batch_size` items at a time, in order."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, e in enumerate(chunk):
            n = len(e.input_ids)
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(e.input_ids), torch.tensor(e.labels), 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}


def shifted_logits(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits predicting each next token, the labels they predict), both aligned, on the model's device."""
    device = next(model.parameters()).device
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    return out.logits[:, :-1], batch["labels"][:, 1:].to(device)


@torch.inference_mode()
def completion_logps(
    model: Any, items: Sequence[Encoded], *, pad_id: int, batch_size: int = 4
) -> list[tuple[float, int]]:
    """(sum of log p over the completion's tokens, number of those tokens) per item, in order."""
    was_training = model.training
    model.eval()
    results: list[tuple[float, int]] = []
    try:
        for batch in batches(items, batch_size, pad_id):
            logits, labels = shifted_logits(model, batch)
            mask = labels != IGNORE_INDEX
            token_logps = -F.cross_entropy(
                logits.float().transpose(1, 2), labels.clamp_min(0), reduction="none"
            )
            sums = (token_logps * mask).sum(-1)
            results += [(float(s), int(n)) for s, n in zip(sums, mask.sum(-1), strict=True)]
    finally:
        model.train(was_training)
    return results


def mean_token_loss(logps: Sequence[tuple[float, int]]) -> float:
    """Mean negative log-likelihood per completion token over all items (token-weighted, as training averages it).

    >>> round(mean_token_loss([(-2.0, 1), (-4.0, 3)]), 3)
    1.5
    """
    tokens = sum(n for _, n in logps)
    return -sum(s for s, _ in logps) / tokens if tokens else math.nan


def preference_stats(
    chosen: Sequence[float], rejected: Sequence[float], ref_chosen: Sequence[float], ref_rejected: Sequence[float],
    *, beta: float,
) -> dict[str, float]:
    """DPO's held-out view of preference pairs, from sequence log-probabilities of policy and reference.

    - `reward_accuracy`, `reward_margin`: DPO's implicit reward beta·(log π − log π_ref), chosen minus
      rejected; the share of pairs where it is positive, and its mean (as TRL logs them). Both are 0 for
      the reference itself.
    - `logp_accuracy`, `logp_margin`: the same on log π alone (chosen minus rejected), comparable between
      the model before and after the stage.

    >>> preference_stats([-1.0, -3.0], [-2.0, -2.0], [-2.0, -2.0], [-2.0, -2.0], beta=0.5)
    {'reward_accuracy': 0.5, 'reward_margin': 0.0, 'logp_accuracy': 0.5, 'logp_margin': 0.0}
    """
    raw = [c - r for c, r in zip(chosen, rejected, strict=True)]
    ref = [c - r for c, r in zip(ref_chosen, ref_rejected, strict=True)]
    rewards = [beta * (m - m0) for m, m0 in zip(raw, ref, strict=True)]
    n = len(raw)
    if n == 0:
        return {}
    return {
        "reward_accuracy": sum(r > 0 for r in rewards) / n,
        "reward_margin": sum(rewards) / n,
        "logp_accuracy": sum(m > 0 for m in raw) / n,
        "logp_margin": sum(raw) / n,
    }


@torch.inference_mode()
def greedy_replies(
    model: Any, tokenizer: Any, prompts: Sequence[Messages], *, max_new_tokens: int, batch_size: int = 16
) -> list[str]:
    """The model's greedy reply to each chat prompt, in order (deterministic, so before/after compare fairly)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            # Left padding: every prompt ends where its reply starts. The template already has the BOS.
            batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            output = model.generate(
                **batch.to(device), do_sample=False, max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            replies += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        model.train(was_training)
    return replies


def reward_means(rewards: Sequence[Reward], rows: Sequence[dict[str, Any]], replies: Sequence[str]) -> dict[str, float]:
    """Mean of each reward over the replies it applies to (None = not applicable), and of their weighted sum.

    Rewards are called once over all rows, the way GRPO's trainer calls them
    on a batch: completions as assistant messages, the rows' columns as lists.
    """
    columns = {k for row in rows for k in row if k != "prompt"}
    kwargs = {k: [row.get(k) for row in rows] for k in columns}
    completions = [[{"role": "assistant", "content": r}] for r in replies]
    prompts = [row["prompt"] for row in rows]
    means: dict[str, float] = {}
    totals = [0.0] * len(rows)
    scored = [False] * len(rows)
    for reward in rewards:
        scores = reward.fn(completions, prompts=prompts, **kwargs)
        valid = [(i, s) for i, s in enumerate(scores) if s is not None and not math.isnan(s)]
        if valid:
            means[f"reward/{reward.name}"] = sum(s for _, s in valid) / len(valid)
        for i, s in valid:
            totals[i] += reward.weight * s
            scored[i] = True
    kept = [t for t, ok in zip(totals, scored, strict=True) if ok]
    if kept:
        means["reward"] = sum(kept) / len(kept)
    return means
