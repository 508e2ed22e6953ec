"""GRPO's log-prob passes run each prompt once per group instead of once per completion.

TRL scores a generation batch as rows of prompt + completion. GRPO samples `num_generations` completions per
prompt, so every prompt goes through the model (forward and backward) once per completion: on the quickstart's
word problems ~60% of the tokens of a loss pass are prompt tokens, each computed 4 times.

Here the rows that share a prompt share one pass over it: the distinct prompts (all but their last token) run
once with the KV cache on; the cache is expanded to every row with `index_select`, whose backward sums the
rows' gradients into their prompt; then each row's last prompt token and completion run on top of it through
TRL's own fused LM head (the patched forward with `fused_lm_head=True`, as TRL calls it). Positions count from
the start of the padded row as in TRL's single pass, the mask is the row's full mask, so each token sees what
it saw there. One difference: LoRA dropout draws one mask per prompt instead of one per row.

Where it cannot share, the caller keeps TRL's path: no prompt repeats, a cache that is not plain per-layer
keys/values (sliding-window, linear-attention or shared-KV layers), multimodal inputs, the MoE aux loss,
gradient checkpointing (no cache with it), sharded models. tests/grpo/test_shared_prompts.py checks log-probs,
entropies and gradients against TRL's path.
"""

from __future__ import annotations

from typing import Any

import torch


def shared_prompt_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, *, compute_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(per-token log-probs, entropies or None) of the last `logits_to_keep` tokens of each row, as TRL's
    `_get_per_token_logps_and_entropies` returns them; None where rows share no prompt or the model's cache
    cannot be shared (the caller then runs TRL's path). Call it under the trainer's autocast."""
    prefix_len = input_ids.size(1) - logits_to_keep - 1  # the last prompt token predicts the first completion token
    groups = prefix_groups(input_ids, attention_mask, prefix_len)
    if groups is None:
        return None
    first_row, row_prefix = groups
    prompt_pass = model(input_ids=input_ids[first_row, :prefix_len], attention_mask=attention_mask[first_row, :prefix_len],
                        use_cache=True, logits_to_keep=1)
    per_row = cache_per_row(prompt_pass.past_key_values, row_prefix)
    if per_row is None:
        return None
    tail = input_ids[:, prefix_len:]
    labels = tail.masked_fill(attention_mask[:, prefix_len:] == 0, -100)
    labels[:, 0] = -100  # the last prompt token is context, as in TRL's labels
    scored = model(input_ids=tail, attention_mask=attention_mask, past_key_values=per_row, labels=labels,
                   fused_lm_head=True)
    entropies = scored.entropy[:, -logits_to_keep:] if compute_entropy else None
    return scored.log_probs[:, -logits_to_keep:], entropies


def prefix_groups(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix_len: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(the first row of each distinct prefix, each row's prefix index) for the first `prefix_len` tokens (ids and
    mask both equal); None when the prefix is empty or no two rows share one.

    >>> ids = torch.tensor([[0, 5, 6, 1], [0, 5, 6, 2], [7, 8, 9, 3]])
    >>> first_row, row_prefix = prefix_groups(ids, (ids != 0).long(), 3)
    >>> first_row.tolist(), row_prefix.tolist()
    ([0, 2], [0, 0, 1])
    """
    if prefix_len < 1:
        return None
    prefixes = torch.cat([input_ids[:, :prefix_len], attention_mask[:, :prefix_len].to(input_ids.dtype)], dim=1)
    distinct, row_prefix = torch.unique(prefixes, dim=0, return_inverse=True)
    rows = input_ids.size(0)
    if distinct.size(0) == rows:
        return None
    first_row = torch.full((distinct.size(0),), rows, dtype=torch.long, device=input_ids.device)
    first_row = first_row.scatter_reduce(0, row_prefix, torch.arange(rows, device=input_ids.device), reduce="amin")
    return first_row, row_prefix


def cache_per_row(cache: Any, row_prefix: torch.Tensor) -> Any:
    """A DynamicCache with each row's prefix keys/values (`index_select`: its backward sums the rows' gradients
    into their prefix), or None for a cache other than plain, filled per-layer keys/values."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    if type(cache) is not DynamicCache or not all(
            type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers):
        return None
    return DynamicCache(ddp_cache_data=[
        (layer.keys.index_select(0, row_prefix), layer.values.index_select(0, row_prefix)) for layer in cache.layers])
