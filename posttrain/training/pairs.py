"""On-policy preference pairs: sample from the model, rank by reward, keep best vs worst.

Pairwise preference training (DPO, ORPO, SimPO) without hand-labelled pairs:
for each prompt the stage's input model writes N completions, the recipe's
rewards score them, and the best and the worst become chosen and rejected.
Prompts whose samples all score the same teach nothing and are skipped
(counted as ties). A pairwise stage (training/pairwise.py) takes its training
examples from `training_pairs` and its held-out pairs from `held_out_pairs`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch

from posttrain.errors import UserError
from posttrain.stagekit import StageContext
from posttrain.stagekit.specs import OnPolicyPairs
from posttrain.training.scoring import Reward, check_columns, load_rewards, weighted_total


@dataclass
class PairCounts:
    prompts: int = 0
    pairs: int = 0
    ties: int = 0
    """Prompts whose scored samples were all equal: no preference to learn."""
    unscored: int = 0
    """Prompts where fewer than two samples had any applicable reward."""

    def as_metrics(self) -> dict[str, int]:
        return {f"pairs_{k}": v for k, v in asdict(self).items()}


def best_and_worst(completions: Sequence[str], scores: Sequence[float | None]) -> tuple[str, str] | None:
    """(chosen, rejected): the highest- and lowest-scoring completions, or None when they tie.

    Unscored (None) completions are ignored; among equal scores the first one
    wins, so the choice is deterministic.

    >>> best_and_worst(["a", "b", "c"], [0.5, 1.0, 0.0])
    ('b', 'c')
    >>> best_and_worst(["a", "b"], [1.0, 1.0]) is None
    True
    """
    scored = [(s, i) for i, s in enumerate(scores) if s is not None and not math.isnan(s)]
    if len(scored) < 2:
        return None
    best = min(scored, key=lambda t: (-t[0], t[1]))
    worst = min(scored, key=lambda t: (t[0], t[1]))
    if best[0] <= worst[0]:
        return None
    return completions[best[1]], completions[worst[1]]


@torch.no_grad()
def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict[str, str]]],
    *,
    samples: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    prompts_per_batch: int = 8,
) -> list[list[str]]:
    """`samples` sampled replies per conversational prompt, as text, with the chat template applied."""
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    out: list[list[str]] = []
    for start in range(0, len(prompts), prompts_per_batch):
        chunk = prompts[start : start + prompts_per_batch]
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in chunk]
        # Left padding so every prompt ends where its reply starts; the chat template already has the BOS.
        batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        batch = batch.to(model.device)
        generated = model.generate(
            **batch,
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=samples,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        replies = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        # generate() returns the samples of each prompt next to each other.
        out += [[r.strip() for r in replies[i * samples : (i + 1) * samples]] for i in range(len(chunk))]
    model.train(was_training)
    return out


def score_samples(rewards: Sequence[Reward], row: dict[str, Any], completions: list[str]) -> list[float | None]:
    """Weighted reward of each completion of one prompt row, called the way GRPO's trainer calls rewards."""
    n = len(completions)
    columns = {k: [v] * n for k, v in row.items() if k != "prompt"}
    as_messages = [[{"role": "assistant", "content": c}] for c in completions]
    per_reward = [r.fn(as_messages, prompts=[row["prompt"]] * n, **columns) for r in rewards]
    totals = weighted_total(per_reward, [r.weight for r in rewards])
    return [None if t is None or math.isnan(t) else t for t in totals]


def build_pairs(
    rows: Sequence[dict[str, Any]], samples: Sequence[list[str]], rewards: Sequence[Reward]
) -> tuple[list[dict[str, Any]], PairCounts]:
    """Canonical preference rows (plus the two scores) and the counts of what was kept and skipped."""
    counts = PairCounts(prompts=len(rows))
    pairs: list[dict[str, Any]] = []
    for row, completions in zip(rows, samples, strict=True):
        scores = score_samples(rewards, row, completions)
        picked = best_and_worst(completions, scores)
        if picked is None:
            if sum(s is not None for s in scores) < 2:
                counts.unscored += 1
            else:
                counts.ties += 1
            continue
        chosen, rejected = picked
        pairs.append({
            "prompt": row["prompt"], "chosen": chosen, "rejected": rejected,
            "chosen_score": max(s for s in scores if s is not None),
            "rejected_score": min(s for s in scores if s is not None),
        })
    counts.pairs = len(pairs)
    return pairs, counts


def on_policy_pairs(
    ctx: StageContext, data: str, spec: OnPolicyPairs, model: Any, *, method: str
) -> tuple[list[dict[str, Any]], PairCounts]:
    """Preference rows sampled from `model` on the prompts of dataset `data`, or those of an earlier try.

    `method` names the stage type in messages. The stage folder is wiped
    whenever the stage's fingerprint changes, so a pairs file found there was
    made from the same model, prompts and settings. Under a multi-process
    launch rank 0 samples and writes the pairs while the other ranks wait, then
    read them: one sampling, the very pairs a single process makes.
    """
    with main_process_first():
        return _saved_or_sampled(ctx, data, spec, model, method=method)


@contextmanager
def main_process_first() -> Iterator[None]:
    """Under `accelerate launch`, rank 0 runs the block before the other ranks; in one process, just run it.

    A rank 0 that fails never reaches the barrier, and the launcher stops
    the waiting ranks when it exits.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield
        return
    from accelerate import PartialState

    # The trainer, made afterwards, joins this process group (gloo on CPUs, as it would pick itself).
    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():
        yield


def _saved_or_sampled(
    ctx: StageContext, data: str, spec: OnPolicyPairs, model: Any, *, method: str
) -> tuple[list[dict[str, Any]], PairCounts]:
    from data_prep import read_rows
    from data_prep.rows import write_jsonl

    pairs_path, counts_path = ctx.stage_dir / "pairs.jsonl", ctx.stage_dir / "pairs.json"
    if pairs_path.exists() and counts_path.exists():
        counts = PairCounts(**json.loads(counts_path.read_text()))
        ctx.console.print(f"reusing {counts.pairs} on-policy pairs from {pairs_path}")
        return read_rows(pairs_path), counts

    prompts = read_rows(ctx.dataset(data).train_path)
    rewards = load_rewards(spec.rewards, base_dir=ctx.base_dir)
    check_columns(rewards, set().union(*(row.keys() for row in prompts)) - {"prompt"}, data)
    if torch.cuda.is_available():
        model.to("cuda")
    with ctx.console.status(f"sampling {spec.samples} completions for each of {len(prompts)} prompts..."):
        samples = sample_completions(
            model, ctx.tokenizer, [row["prompt"] for row in prompts], samples=spec.samples,
            max_new_tokens=spec.max_new_tokens, temperature=spec.temperature, seed=ctx.seed,
        )
    pairs, counts = build_pairs(prompts, samples, rewards)
    ctx.console.print(
        f"on-policy pairs: {counts.prompts} prompts → {counts.pairs} pairs kept, {counts.ties} ties skipped"
        + (f", {counts.unscored} with no applicable reward" if counts.unscored else "")
    )
    if not pairs:
        raise UserError(
            f"on-policy {method}: all {counts.prompts} prompts gave tied samples, so there is no pair to learn "
            "from; raise on_policy.samples or temperature, or use a reward that separates answers more finely"
        )
    write_jsonl(pairs_path, pairs)
    counts_path.write_text(json.dumps(asdict(counts)) + "\n")
    return pairs, counts


def preference_example(row: dict[str, Any]) -> dict[str, Any]:
    """A TRL conversational preference example from a canonical preference row.

    >>> preference_example({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"})["chosen"]
    [{'role': 'assistant', 'content': '4'}]
    """
    return {
        "prompt": row["prompt"],
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }


def training_pairs(
    ctx: StageContext, data: str, on_policy: OnPolicyPairs | None, model: Any, *, method: str
) -> tuple[list[dict[str, Any]], PairCounts | None]:
    """A pairwise stage's training examples (TRL conversational pairs) and, when sampled, the pair counts.

    Without `on_policy` they are the preference rows of dataset `data`; with it,
    pairs sampled from `model` on that prompt dataset (`on_policy_pairs`).
    """
    from data_prep import read_rows

    if on_policy is None:
        return [preference_example(row) for row in read_rows(ctx.dataset(data).train_path)], None
    rows, counts = on_policy_pairs(ctx, data, on_policy, model, method=method)
    return [preference_example(row) for row in rows], counts


def held_out_pairs(ctx: StageContext, data: str, on_policy: OnPolicyPairs | None, model: Any) -> list[dict[str, Any]]:
    """The pairs a pairwise stage's held-out objective measures, made the way its training pairs were.

    Without `on_policy`, the first held-out preference rows of dataset `data`;
    with it, pairs sampled from `model` (the stage's input) on its held-out
    prompts and ranked by the same rewards, cached in heldout_pairs.jsonl,
    which lives and dies with the stage folder. [] when there is no held-out split.
    """
    from data_prep import read_rows
    from data_prep.rows import write_jsonl
    from posttrain.stagekit.objective import held_out_rows

    rows = held_out_rows(ctx, data)
    if on_policy is None or not rows:
        return rows
    cache = ctx.stage_dir / "heldout_pairs.jsonl"
    if cache.exists():
        return read_rows(cache)
    samples = sample_completions(
        model, ctx.tokenizer, [row["prompt"] for row in rows], samples=on_policy.samples,
        max_new_tokens=on_policy.max_new_tokens, temperature=on_policy.temperature, seed=ctx.seed,
    )
    pairs, _ = build_pairs(rows, samples, load_rewards(on_policy.rewards, base_dir=ctx.base_dir))
    write_jsonl(cache, pairs)
    return pairs
