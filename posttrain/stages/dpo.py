"""Direct preference optimization with TRL's DPOTrainer and a LoRA.

The reference model is the stage's input model: TRL evaluates it by switching
the new adapter off, and the input's own adapters are already merged into the
weights, so after SFT the reference is the SFT model, not the base.

Pairs (or, with `on_policy`, pairs sampled from the input model), training
and the held-out objective are the pairwise core's (training/pairwise.py);
this module says what DPO sets. Every value DPOTrainer would refuse is
refused when the recipe is validated, before any model loads: loss types are
those the installed TRL lists (training/trl_options.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from posttrain.stagekit import StageType
from posttrain.stagekit.display import Panel
from posttrain.stagekit.specs import LoraSpec, PairwiseCommon
from posttrain.training.pairwise import PairwiseMethod, pairwise_data_kinds


class DPOStage(PairwiseCommon):
    type: Literal["dpo"]
    beta: PositiveFloat = Field(0.1, description="Strength of the KL pull toward the reference (input) model.")
    loss_type: str | list[str] = Field(
        "sigmoid",
        description="TRL DPO loss type(s), passed through: any value the installed TRL's DPOConfig lists "
        "(sigmoid, ipo, sigmoid_norm, ...); a list combines them. exo_pair is refused: it needs label smoothing, "
        "which this stage does not set.",
    )
    loss_weights: list[float] | None = Field(
        None, description="One weight per loss type when several are combined (default 1 each)."
    )

    @field_validator("loss_type")
    @classmethod
    def _known_loss(cls, value: str | list[str]) -> str | list[str]:
        from posttrain.training.trl_options import dpo_loss_types

        given = [value] if isinstance(value, str) else value
        if not given:
            raise ValueError("give at least one loss type")
        known = dpo_loss_types()
        unknown = [v for v in given if known and v not in known]
        if unknown:
            raise ValueError(f"unknown DPO loss_type {unknown}; the installed TRL knows: {', '.join(known)}")
        if "exo_pair" in given:
            raise ValueError("exo_pair needs label smoothing > 0 (TRL's DPOTrainer refuses it at 0), and this stage "
                             "does not set label smoothing; choose another loss type")
        return value

    @field_validator("loss_weights")
    @classmethod
    def _one_weight_per_loss(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        loss_type = info.data.get("loss_type")  # absent when loss_type itself was refused
        if value is None or loss_type is None:
            return value
        types = [loss_type] if isinstance(loss_type, str) else loss_type
        if len(value) != len(types):
            raise ValueError(f"{len(value)} weight(s) for {len(types)} loss type(s) {types}: give one weight per "
                             "loss type (TRL's DPOConfig refuses any other count)")
        return value

    @field_validator("lora")
    @classmethod
    def _no_lm_head_adapter(cls, value: LoraSpec) -> LoraSpec:
        targets = [] if isinstance(value.target_modules, str) else value.target_modules
        if any(t == "lm_head" or t.endswith(".lm_head") for t in targets):
            raise ValueError("target_modules names lm_head, which TRL's DPOTrainer refuses: it computes "
                             "log-probabilities from lm_head.weight directly, so an adapter there would never train")
        return value


def _arguments(spec: DPOStage) -> dict[str, Any]:
    return {
        "beta": spec.beta,
        "loss_type": spec.loss_type if isinstance(spec.loss_type, list) else [spec.loss_type],
        "loss_weights": spec.loss_weights,
    }


METHOD = PairwiseMethod(name="DPO", config="trl:DPOConfig", trainer="trl:DPOTrainer", arguments=_arguments,
                        reference=True)

STAGE = StageType(
    name="dpo", spec=DPOStage, run=METHOD.run, data_kinds=("preference",), data_kinds_for=pairwise_data_kinds,
    held_out_objective=METHOD.held_out_objective,
    panels=(Panel("reward margin (chosen − rejected)", ("rewards/margins",)),
            Panel("preference accuracy", ("rewards/accuracies",))),
)
