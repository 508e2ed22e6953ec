"""Rollouts from a merged copy of the policy: the LoRA folded into a second copy of the base, synced each step.

Profiled on the 2-core CPU (SmolLM2-135M, bf16 base, LoRA r16 on every linear, 8 rows × 48 tokens):
generation is most of a GRPO step, and during it PEFT runs every adapted linear as three
matmuls plus a dropout module call per token (`x·W + s·B·(A·x)`), ~210 small layers for this model.
A copy of the base whose weights are `W + s·B·A` generates with one matmul per linear.

The trainer's own weights are never touched (merging in place and unmerging in bf16 would drift
the frozen base by rounding, changing what is learned). After each optimizer step the copy is
rebuilt from the live adapter: `W_copy = W + s·B·A`, computed in fp32 from the exact base and cast
once, so no error accumulates from step to step. The copy costs one more model in memory.

In exact arithmetic the copy is the policy, so its samples are the policy's samples; the loss is
computed by the trainer on its own (unmerged) weights, as before. In fp32 the two paths give the
same rollouts token for token (tests/grpo/test_rollouts.py); in bf16 they round differently, as any
serving engine does (TRL's vLLM path merges the same way), and GRPO's on-policy ratio is taken
against the trainer's own log-probs, so nothing in the loss reads the copy's numbers.

GRPO asks for each prompt `num_generations` times in one batch; the copy prefills each distinct prompt once and
expands its KV cache to the prompt's rows (`shared_prefill_generate`), so only the decoding is per row.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from posttrain.training.shared_prompts import cache_per_row, prefix_groups

_PEFT_PREFIX = "base_model.model."


class MergedCopy:
    """A frozen copy of a PEFT model's base with its (single, active) LoRA merged in; `sync()` refreshes it."""

    def __init__(self, peft_model: Any, layers: dict[str, Any] | None = None) -> None:
        self.layers = lora_linears(peft_model) if layers is None else layers
        twin = copy.deepcopy(peft_model)
        self.model = twin.merge_and_unload().eval()
        # TRL's GRPOTrainer patches `forward` on the model instance (trl.trainer.utils.add_fused_lm_head) with a
        # closure over the ORIGINAL model's bound forward; deepcopy keeps that closure, so the copy would run the
        # trainer's own PEFT layers (train mode, dropout included) and merge nothing. The copy only generates:
        # its class's forward is the one it needs.
        vars(self.model).pop("forward", None)
        # GRPO generates each prompt `num_generations` times: the copy prefills each distinct prompt once.
        self.model.generate = functools.partial(shared_prefill_generate, self.model)
        self.model.requires_grad_(False)
        # The copy only generates: always with the KV cache. The trainer's model may have it switched off in its
        # config (as for gradient checkpointing), and a copy that inherits that recomputes the whole sequence
        # for every new token (measured: ~20x slower generation in the trainer).
        self.model.config.use_cache = True
        if self.model.generation_config is not None:
            self.model.generation_config.use_cache = True
        self.targets = {name: self.model.get_submodule(name.removeprefix(_PEFT_PREFIX)) for name in self.layers}
        self.sync()

    @torch.no_grad()
    def sync(self) -> None:
        """Set every merged weight to base + the adapter's current delta, from the live model."""
        for name, layer in self.layers.items():
            adapter = layer.active_adapters[0]
            base = layer.get_base_layer().weight
            delta = layer.get_delta_weight(adapter)
            self.targets[name].weight.copy_(base.float() + delta.float())


def lora_linears(peft_model: Any) -> dict[str, Any]:
    """The model's LoRA layers by name: {} unless every one is a plain-Linear LoRA the copy can merge exactly."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import Linear as LoraLinear

    layers: dict[str, Any] = {}
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        plain = (
            type(module) is LoraLinear
            and type(module.get_base_layer()) is torch.nn.Linear
            and len(module.active_adapters) == 1
            and not module.use_dora.get(module.active_adapters[0], False)
            and not module.lora_bias.get(module.active_adapters[0], False)
            and not module.merged
        )
        if not plain:
            return {}  # quantized bases, DoRA, expert wrappers, embeddings: generate through PEFT as before
        layers[name] = module
    return layers


def merged_copy_for(model: Any) -> MergedCopy | None:
    """A MergedCopy of `model` when it is a PEFT LoRA the copy can merge exactly, else None."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return None
    layers = lora_linears(model)
    return MergedCopy(model, layers) if layers else None


def shared_prefill_generate(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            **kwargs: Any) -> Any:
    """`model.generate` for rows that repeat prompts (GRPO's groups): each distinct prompt, all but its last token, is
    prefilled once and its KV cache expanded to its rows; `generate` then continues from that cache as it would
    from its own prefill (positions from the attention mask, as `generate` derives them). Rows that repeat nothing,
    or a cache other than plain per-layer keys/values, generate as usual."""
    generate = type(model).generate  # the class's: the instance's is this function
    groups = None
    if attention_mask is not None and kwargs.get("cache") is None:
        groups = prefix_groups(input_ids, attention_mask, input_ids.size(1) - 1)
    per_row = None
    if groups is not None:
        first_row, row_prefix = groups
        prefix_mask = attention_mask[first_row, :-1]
        positions = (prefix_mask.long().cumsum(-1) - 1).masked_fill(prefix_mask == 0, 0)
        with torch.no_grad():
            prefill = model(input_ids=input_ids[first_row, :-1], attention_mask=prefix_mask, position_ids=positions,
                            use_cache=True, logits_to_keep=1)
        per_row = cache_per_row(prefill.past_key_values, row_prefix)
    if per_row is not None:
        kwargs["cache"] = per_row
    return generate(model, input_ids=input_ids, attention_mask=attention_mask, **kwargs)


@contextmanager
def generating_with(trainer: Any, model: Any) -> Iterator[None]:
    """`trainer.model_wrapped` is `model` inside the block: TRL's generation path reads the model from there,
    so its own generation config, padding and EOS handling stay in force with the copy."""
    saved = trainer.model_wrapped
    trainer.model_wrapped = model
    try:
        yield
    finally:
        trainer.model_wrapped = saved
