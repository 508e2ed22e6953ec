"""Log-probabilities of held-out completions, for the held-out objectives of the preference stages.

Plain torch on at most HELD_OUT_ROWS rows of a dataset's held-out split, in
small batches under `torch.inference_mode`: a few seconds on a CPU for a
135M model. A completion is scored the way TRL's preference trainers score
it: the chat template with the generation prompt is the context, and every
token of the assistant's turn (end-of-turn marker included) counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from posttrain.stagekit import StageContext

HELD_OUT_ROWS = 64
"""At most this many held-out rows are scored: a bounded cost beside each stage."""

Messages = list[dict[str, str]]


def held_out_rows(ctx: StageContext, data: str) -> list[dict[str, Any]]:
    """The first rows of dataset `data`'s held-out split (eval.jsonl), at most HELD_OUT_ROWS; [] without one."""
    from data_prep import read_rows

    path = ctx.dataset(data).eval_path
    if path is None or not path.exists():
        return []
    return read_rows(path)[:HELD_OUT_ROWS]


def encode(tokenizer: Any, prompt: Messages, completion: str, *, max_length: int) -> tuple[list[int], int]:
    """(token ids of the templated conversation, how many of them are the prompt), cut to `max_length`."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}], tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full_text, add_special_tokens=False)["input_ids"][:max_length]
    return ids, min(len(prompt_ids), len(ids))


@torch.inference_mode()
def completion_logps(
    model: Any, tokenizer: Any, prompts: Sequence[Messages], completions: Sequence[str], *,
    max_length: int, batch_size: int = 8,
) -> list[tuple[float, int]]:
    """(Σ log p of the completion's tokens, number of those tokens) for each prompt/completion, in order."""
    encoded = [encode(tokenizer, p, c, max_length=max_length) for p, c in zip(prompts, completions, strict=True)]
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[tuple[float, int]] = []
    try:
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            scored = torch.zeros((len(chunk), width), dtype=torch.bool)  # completion tokens, by position
            for i, (row_ids, prompt_len) in enumerate(chunk):
                ids[i, : len(row_ids)] = torch.tensor(row_ids)
                scored[i, prompt_len : len(row_ids)] = True
            mask = (torch.arange(width) < torch.tensor([len(r) for r, _ in chunk])[:, None]).long()
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
            token_logps = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None].to(device)).squeeze(-1)
            keep = scored[:, 1:].to(device)
            sums, counts = (token_logps * keep).sum(-1).tolist(), keep.sum(-1).tolist()
            out += [(s, int(n)) for s, n in zip(sums, counts, strict=True)]
    finally:
        model.train(was_training)
    return out


def per_token(scores: Sequence[tuple[float, int]]) -> list[float]:
    """Length-normalized log-probabilities (mean over the completion's tokens; 0 for an empty completion)."""
    return [s / n if n else 0.0 for s, n in scores]


def preference_metrics(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], *, max_length: int) -> dict[str, float]:
    """Reference-free held-out preference metrics on canonical pairs (prompt, chosen, rejected).

    What ORPO and SimPO push apart is the per-token log-probability of the
    chosen and the rejected completion, so that is what is measured:
    `preference_accuracy` (share of pairs where chosen is above rejected),
    `preference_margin` (mean difference, nats per token) and
    `chosen_logp_per_token` (the likelihood ORPO's SFT term raises).
    """
    prompts = [r["prompt"] for r in rows]
    chosen = per_token(completion_logps(model, tokenizer, prompts, [r["chosen"] for r in rows], max_length=max_length))
    rejected = per_token(
        completion_logps(model, tokenizer, prompts, [r["rejected"] for r in rows], max_length=max_length)
    )
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {
        "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
        "preference_margin": sum(margins) / len(margins),
        "chosen_logp_per_token": sum(chosen) / len(chosen),
    }


@contextmanager
def reference_model(ctx: StageContext, model: Any) -> Iterator[Any]:
    """The stage's input model, against which a reference-based method's log-ratios are taken.

    A LoRA model trained by the stage is the input model with its adapter
    switched off (the input's own adapters are merged into its weights), so no
    second copy is loaded; any other model gets the input loaded anew.
    """
    if getattr(model, "peft_config", None) and hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        reference = ctx.load_input_model()
        reference.eval()
        yield reference
