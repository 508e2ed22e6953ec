"""One core for the pairwise preference stages (dpo, orpo, simpo); each stage module declares only what differs.

A pairwise stage trains a TRL trainer on (prompt, chosen, rejected) examples:
the preference rows of its dataset, or with `on_policy` pairs sampled from its
input model and ranked by reward (training/pairs.py). A stage module declares
a `PairwiseMethod`: TRL's config and trainer by import path, the config
arguments its spec sets, and whether its input model is its reference; it
takes `run` and `held_out_objective` from it.

The held-out objective is measured on held-out pairs made the way the training
pairs were (`pairs.held_out_pairs`: the held-out split, or with `on_policy`
the input model's own samples on the held-out prompts), so every method
measures one, on-policy included. A method with a reference gets DPO's
implicit reward against it; a reference-free one the per-token
log-probability margin it optimizes (training/objectives.py).

Trainer libraries are imported inside `run`, so importing this module (and
validating a recipe) stays cheap.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from posttrain.stagekit.context import StageContext, StageResult
from posttrain.stagekit.declaration import DataNeed
from posttrain.stagekit.objective import HeldOutObjective
from posttrain.stagekit.specs import PairwiseCommon


@dataclass(frozen=True)
class PairwiseMethod:
    """What one pairwise method is, beyond the shared core."""

    name: str
    """The method as messages name it (DPO, ORPO, SimPO)."""
    config: str
    """TRL's config class, "module:Class"; built from the shared TrainingArguments, `max_length` and `arguments`."""
    trainer: str
    """TRL's trainer class, "module:Class"; called with model, args, train_dataset, processing_class, peft_config
    and callbacks (with a reference, TRL takes the input model as reference by switching the new adapter off)."""
    arguments: Callable[[Any], Mapping[str, Any]]
    """The method's own config arguments from its spec (beta, loss type, ...)."""
    reference: bool
    """Whether the input model is the method's reference: its held-out objective is then DPO's implicit reward
    β·(log π − log π_ref) with the config's `beta`; reference-free methods are measured per token."""

    def run(self, ctx: StageContext, spec: PairwiseCommon) -> StageResult:
        """Train the method on the stage's pairs (sampled first with `on_policy`) and save the model."""
        from datasets import Dataset

        from posttrain.training.arguments import common_arguments
        from posttrain.training.lora import lora_config
        from posttrain.training.outputs import train_and_save
        from posttrain.training.pairs import training_pairs

        config_class, trainer_class = _imported(self.config), _imported(self.trainer)
        model = ctx.load_input_model(trains_adapter=not spec.full_finetune)
        examples, counts = training_pairs(ctx, spec.data, spec.on_policy, model, method=self.name)
        config = config_class(
            **common_arguments(ctx, spec.train, trains_adapter=not spec.full_finetune),
            max_length=spec.train.max_length,
            **self.arguments(spec),
        )
        trainer = trainer_class(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(examples),
            processing_class=ctx.tokenizer,
            peft_config=None if spec.full_finetune else lora_config(spec.lora, model),
            callbacks=ctx.callbacks,
        )
        result = train_and_save(ctx, trainer, full_finetune=spec.full_finetune)
        if counts is not None:
            result.metrics.update(counts.as_metrics())
        return result

    def held_out_objective(self, ctx: StageContext, spec: PairwiseCommon, trained: Any) -> HeldOutObjective | None:
        """Preference accuracy and margin on held-out pairs, for the input model and the trained one.

        None when the dataset has no held-out split (or, with `on_policy`, no
        held-out prompt gave a pair).
        """
        from posttrain.stagekit.objective import input_model
        from posttrain.training.objectives import (
            objective_of,
            pair_logps,
            per_token_preference,
            preference_stats,
        )
        from posttrain.training.pairs import held_out_pairs

        length = spec.train.max_length
        with input_model(ctx, trained) as before:
            rows = held_out_pairs(ctx, spec.data, spec.on_policy, before)
            if not rows:
                return None
            before_chosen, before_rejected = pair_logps(before, ctx.tokenizer, rows, max_length=length)
        after_chosen, after_rejected = pair_logps(trained, ctx.tokenizer, rows, max_length=length)
        if not self.reference:
            return objective_of(
                per_token_preference(before_chosen, before_rejected),
                per_token_preference(after_chosen, after_rejected),
                rows=len(rows),
            )
        beta = self.arguments(spec)["beta"]
        ref_chosen, ref_rejected = [s for s, _ in before_chosen], [s for s, _ in before_rejected]
        return objective_of(
            preference_stats(ref_chosen, ref_rejected, ref_chosen, ref_rejected, beta=beta),
            preference_stats([s for s, _ in after_chosen], [s for s, _ in after_rejected], ref_chosen, ref_rejected,
                             beta=beta),
            rows=len(rows),
            notes=[f"reward_*: {self.name}'s implicit reward vs the input model (0 before, by definition); "
                   "logp_*: log p(chosen) − log p(rejected) of the model itself"],
        )


def pairwise_data_kinds(raw: Mapping[str, Any]) -> DataNeed:
    """Preference pairs, or with `on_policy` a prompt dataset the pairs are sampled on."""
    return (("prompt",), "") if raw.get("on_policy") else (("preference",), "")


def _imported(path: str) -> Any:
    """The object at "module:attr"."""
    module, _, attr = path.partition(":")
    if module.startswith("trl.experimental"):
        # Chosen knowingly (ORPO, CPO live there); TRL's import-time notice about it is noise for users.
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    return getattr(importlib.import_module(module), attr)
