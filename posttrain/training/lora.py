"""The PEFT LoraConfig for a recipe's `lora:` block, fitted to the model it adapts."""

from __future__ import annotations

from typing import Any

from peft import LoraConfig

from posttrain.errors import UserError
from posttrain.stagekit.specs import LoraSpec


def lora_config(spec: LoraSpec, model: Any = None) -> LoraConfig:
    """`spec` as PEFT takes it. On a mixture-of-experts `model`, PEFT adapts the experts' fused weights with
    parameter wrappers that take no dropout: with `lora.experts` (the default) the adapter's dropout is 0 (an
    explicit non-zero `lora.dropout` is refused with the fix); without, the experts are left out."""
    dropout = spec.dropout
    targets = spec.target_modules
    if model is not None and expert_modules(model):
        if not spec.experts and targets == "all-linear":
            # PEFT resolves all-linear on MoE models to the fused expert weights too: name the rest instead.
            targets = dense_linear_names(model)
        elif dropout > 0 and "dropout" in spec.model_fields_set:
            raise UserError(
                f"lora.dropout {dropout}: this is a mixture-of-experts model, and PEFT adapts its experts' fused "
                "weights with parameter wrappers that take no dropout. Fix: set lora.dropout: 0, or lora.experts: "
                "false to adapt attention (and the router) only"
            )
        else:
            dropout = 0.0
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha if spec.alpha is not None else 2 * spec.r,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        trainable_token_indices=token_rows(model) if model is not None else None,
    )


def token_rows(model: Any) -> dict[str, list[int]] | None:
    """The embedding rows of the tokens `model.chat_template` added, for PEFT's `trainable_token_indices`.

    Trained as rows, not whole matrices (`modules_to_save`): the adapter stores a few vectors instead of the
    vocabulary twice, and the rest of the embedding stays frozen as LoRA expects. An untied output head is
    named too, so the model learns to predict the end-of-turn token; PEFT follows a tied one by itself.
    """
    from posttrain.models.templated import trained_tokens

    ids = trained_tokens(model)
    if not ids:
        return None
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {names[id(embed)]: ids}
    if head is not None and head.weight is not embed.weight:
        rows[names[id(head)]] = ids
    return rows


def expert_modules(model: Any) -> list[str]:
    """Names of the modules holding a mixture-of-experts layer's fused expert weights (3-D parameters)."""
    return [name for name, module in model.named_modules()
            if name.endswith("experts") and any(p.dim() == 3 for p in module.parameters(recurse=False))]


def dense_linear_names(model: Any) -> list[str]:
    """Suffixes of the linear layers outside the experts and the output head (attention, the router, ...)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head and ".experts" not in name})
