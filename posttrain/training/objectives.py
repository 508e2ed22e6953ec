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

from posttrain.stagekit.objective import HeldOutObjective
from posttrain.training.scoring import Reward

IGNORE_INDEX = -100

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


def row_nll(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Summed negative log-likelihood of each row's labelled tokens, from aligned logits and labels (float32)."""
    nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return nll.sum(-1).tolist()


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
            counts = (labels != IGNORE_INDEX).sum(-1).tolist()
            results += [(-nll, int(n)) for nll, n in zip(row_nll(logits, labels), counts, strict=True)]
    finally:
        model.train(was_training)
    return results


@dataclass(frozen=True)
class PerRow:
    """A held-out metric kept per row, so a before/after change gets a paired error: Σ values / Σ weights.

    Weight 1 per row is a plain mean; token counts make a per-token mean; weight 0 leaves a row out
    (a reward that does not apply to it).
    """

    values: tuple[float, ...]
    weights: tuple[float, ...]

    @classmethod
    def mean_of(cls, values: Sequence[float]) -> PerRow:
        return cls(tuple(values), (1.0,) * len(values))

    @property
    def value(self) -> float:
        total = sum(self.weights)
        return sum(self.values) / total if total else math.nan


def change_stderr(before: PerRow, after: PerRow) -> float:
    """Standard error of `after.value − before.value`, both measured on the same rows (a paired difference).

    The change is Σ dᵢ / W with dᵢ the per-row difference of the summed values and W the total weight
    (the same rows and tokens on both sides), so its error is √(n·var(d)) / W over the n rows that count.

    >>> round(change_stderr(PerRow.mean_of([0, 0, 0, 0]), PerRow.mean_of([1, 0, 1, 0])), 3)
    0.289
    """
    if before.weights != after.weights:
        raise ValueError("a paired change needs the same rows and weights before and after")
    diffs = [a - b for a, b, w in zip(after.values, before.values, before.weights, strict=True) if w]
    n = len(diffs)
    if n < 2:
        return math.nan
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return math.sqrt(n * variance) / sum(before.weights)


def objective_of(
    before: dict[str, PerRow], after: dict[str, PerRow], *, rows: int, **details: Any
) -> HeldOutObjective:
    """The objective's values before and after, with the paired standard error of each change."""
    return HeldOutObjective(
        before={k: v.value for k, v in before.items()},
        after={k: v.value for k, v in after.items()},
        change_stderr={k: change_stderr(v, after[k]) for k, v in before.items() if k in after},
        rows=rows,
        **details,
    )


def token_loss(logps: Sequence[tuple[float, int]]) -> PerRow:
    """Mean negative log-likelihood per completion token over all items (token-weighted, as training averages it).

    >>> round(token_loss([(-2.0, 1), (-4.0, 3)]).value, 3)
    1.5
    """
    return PerRow(tuple(-s for s, _ in logps), tuple(float(n) for _, n in logps))


def preference_stats(
    chosen: Sequence[float], rejected: Sequence[float], ref_chosen: Sequence[float], ref_rejected: Sequence[float],
    *, beta: float,
) -> dict[str, PerRow]:
    """DPO's held-out view of preference pairs, from sequence log-probabilities of policy and reference.

    - `reward_accuracy`, `reward_margin`: DPO's implicit reward beta·(log π − log π_ref), chosen minus
      rejected; the share of pairs where it is positive, and its mean (as TRL logs them). Both are 0 for
      the reference itself.
    - `logp_accuracy`, `logp_margin`: the same on log π alone (chosen minus rejected), comparable between
      the model before and after the stage.

    >>> stats = preference_stats([-1.0, -3.0], [-2.0, -2.0], [-2.0, -2.0], [-2.0, -2.0], beta=0.5)
    >>> {k: v.value for k, v in stats.items()}
    {'reward_accuracy': 0.5, 'reward_margin': 0.0, 'logp_accuracy': 0.5, 'logp_margin': 0.0}
    """
    raw = [c - r for c, r in zip(chosen, rejected, strict=True)]
    ref = [c - r for c, r in zip(ref_chosen, ref_rejected, strict=True)]
    rewards = [beta * (m - m0) for m, m0 in zip(raw, ref, strict=True)]
    return {
        "reward_accuracy": PerRow.mean_of([float(r > 0) for r in rewards]),
        "reward_margin": PerRow.mean_of(rewards),
        "logp_accuracy": PerRow.mean_of([float(m > 0) for m in raw]),
        "logp_margin": PerRow.mean_of(raw),
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
            # use_cache: a model fresh from training with gradient checkpointing has it off in its config.
            batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            output = model.generate(
                **batch.to(device), do_sample=False, max_new_tokens=max_new_tokens, use_cache=True,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            replies += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        model.train(was_training)
    return replies


def reward_means(
    rewards: Sequence[Reward], rows: Sequence[dict[str, Any]], replies: Sequence[str]
) -> dict[str, PerRow]:
    """Each reward over the replies it applies to (None = not applicable, weight 0), and their weighted sum.

    Rewards are called once over all rows, the way GRPO's trainer calls them
    on a batch: completions as assistant messages, the rows' columns as lists.
    """
    columns = {k for row in rows for k in row if k != "prompt"}
    kwargs = {k: [row.get(k) for row in rows] for k in columns}
    completions = [[{"role": "assistant", "content": r}] for r in replies]
    prompts = [row["prompt"] for row in rows]
    means: dict[str, PerRow] = {}
    totals = [0.0] * len(rows)
    scored = [0.0] * len(rows)
    for reward in rewards:
        scores = [None if s is None or math.isnan(s) else float(s) for s in reward.fn(completions, prompts=prompts, **kwargs)]
        if any(s is not None for s in scores):
            means[f"reward/{reward.name}"] = PerRow(
                tuple(s or 0.0 for s in scores), tuple(0.0 if s is None else 1.0 for s in scores)
            )
        for i, s in enumerate(scores):
            if s is not None:
                totals[i] += reward.weight * s
                scored[i] = 1.0
    if any(scored):
        means["reward"] = PerRow(tuple(totals), tuple(scored))
    return means


def scored_completions(
    model: Any, tokenizer: Any, prompts: Sequence[Messages], completions: Sequence[str], *, max_length: int
) -> list[tuple[float, int]]:
    """(Σ log p of each completion's tokens, their number) after its prompt, in order."""
    items = [encode_completion(tokenizer, p, c, max_length=max_length) for p, c in zip(prompts, completions, strict=True)]
    return completion_logps(model, items, pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def pair_logps(
    model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], *, max_length: int
) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """(Σ log p, tokens) of each pair's chosen and of its rejected completion after its prompt, in row order."""
    prompts = [r["prompt"] for r in rows]
    both = scored_completions(
        model, tokenizer, prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
        max_length=max_length,
    )
    return both[: len(rows)], both[len(rows) :]


def per_token_preference(chosen: Sequence[tuple[float, int]], rejected: Sequence[tuple[float, int]]) -> dict[str, PerRow]:
    """Reference-free held-out preference metrics from (Σ log p, tokens) of each pair's chosen and rejected completion.

    What ORPO and SimPO push apart is the per-token log-probability of the
    chosen and the rejected completion, so that is what is measured:
    `preference_accuracy` (share of pairs where chosen is above rejected),
    `preference_margin` (mean difference, nats per token) and
    `chosen_logp_per_token` (the likelihood ORPO's SFT term raises).

    >>> stats = per_token_preference([(-2.0, 2), (-6.0, 2)], [(-3.0, 1), (-8.0, 4)])
    >>> {k: v.value for k, v in stats.items()}
    {'preference_accuracy': 0.5, 'preference_margin': 0.5, 'chosen_logp_per_token': -2.0}
    """
    per_token_chosen = [s / n if n else 0.0 for s, n in chosen]
    per_token_rejected = [s / n if n else 0.0 for s, n in rejected]
    margins = [c - r for c, r in zip(per_token_chosen, per_token_rejected, strict=True)]
    return {
        "preference_accuracy": PerRow.mean_of([float(m > 0) for m in margins]),
        "preference_margin": PerRow.mean_of(margins),
        "chosen_logp_per_token": PerRow.mean_of(per_token_chosen),
    }
