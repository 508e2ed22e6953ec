"""The PEFT LoraConfig for a recipe's `lora:` block."""

from __future__ import annotations

from peft import LoraConfig

from posttrain.stagekit.specs import LoraSpec


def lora_config(spec: LoraSpec) -> LoraConfig:
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha if spec.alpha is not None else 2 * spec.r,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
