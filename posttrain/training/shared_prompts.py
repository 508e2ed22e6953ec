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
    from transformers.cache_utils import DynamicCache, DynamicLayer

    rows = input_ids.size(0)
    prefix_len = input_ids.size(1) - logits_to_keep - 1  # the last prompt token predicts the first completion token
    if prefix_len < 1:
        return None
    prefixes = torch.cat([input_ids[:, :prefix_len], attention_mask[:, :prefix_len].to(input_ids.dtype)], dim=1)
    distinct, row_prefix = torch.unique(prefixes, dim=0, return_inverse=True)
    if distinct.size(0) == rows:
        return None
    first_row = torch.full((distinct.size(0),), rows, dtype=torch.long, device=input_ids.device)
    first_row = first_row.scatter_reduce(0, row_prefix, torch.arange(rows, device=input_ids.device), reduce="amin")

    prompt_pass = model(input_ids=input_ids[first_row, :prefix_len], attention_mask=attention_mask[first_row, :prefix_len],
                        use_cache=True, logits_to_keep=1)
    cache = prompt_pass.past_key_values
    plain = type(cache) is DynamicCache and all(
        type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers)
    if not plain:
        return None
    per_row = DynamicCache(ddp_cache_data=[
        (layer.keys.index_select(0, row_prefix), layer.values.index_select(0, row_prefix)) for layer in cache.layers])

    tail = input_ids[:, prefix_len:]
    labels = tail.masked_fill(attention_mask[:, prefix_len:] == 0, -100)
    labels[:, 0] = -100  # the last prompt token is context, as in TRL's labels
    scored = model(input_ids=tail, attention_mask=attention_mask, past_key_values=per_row, labels=labels,
                   fused_lm_head=True)
    entropies = scored.entropy[:, -logits_to_keep:] if compute_entropy else None
    return scored.log_probs[:, -logits_to_keep:], entropies
