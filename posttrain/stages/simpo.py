"""SimPO: a length-normalized preference margin with no reference model.

The loss is −log σ(β·(ā_chosen − ā_rejected) − γ), where ā is the model's
mean log-probability per token of an answer (Meng et al. 2024): averaging
over tokens keeps long answers from winning by length, and γ asks for a
margin. TRL runs it through its CPO trainer (trl.experimental) with
`loss_type="simpo"`; `sft_weight` is CPO's `cpo_alpha` (0 = plain SimPO).
Reference-free like ORPO: a `reference` setting is refused.

Pairs (or, with `on_policy`, pairs sampled from the input model), training
and the held-out objective are the pairwise core's (training/pairwise.py);
this module says what SimPO sets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from posttrain.stagekit import StageType
from posttrain.stagekit.display import Panel
from posttrain.stagekit.specs import PairwiseCommon, refuse_reference
from posttrain.training.pairwise import PairwiseMethod, pairwise_data_kinds


class SimPOStage(PairwiseCommon):
    type: Literal["simpo"]
    beta: PositiveFloat = Field(
        2.0, description="β: scale of the per-token log-probability margin (the SimPO paper uses 2 to 2.5)."
    )
    gamma: float = Field(
        0.5, ge=0.0, description="γ: target reward margin; TRL's `simpo_gamma` (the paper uses γ/β ≈ 0.3 to 0.5)."
    )
    sft_weight: float = Field(
        0.0, ge=0.0, description="Weight of an SFT loss on the chosen answer (CPO's `cpo_alpha`); 0 = plain SimPO."
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_free(cls, data: Any) -> Any:
        return refuse_reference(data, method="SimPO", why="its margin is the model's own per-token log-probabilities")


METHOD = PairwiseMethod(
    name="SimPO", config="trl.experimental.cpo:CPOConfig", trainer="trl.experimental.cpo:CPOTrainer",
    arguments=lambda spec: {
        "loss_type": "simpo", "beta": spec.beta, "simpo_gamma": spec.gamma, "cpo_alpha": spec.sft_weight,
        "remove_unused_columns": False,  # the pair collator needs the chosen_/rejected_ columns
    },
    reference=False,
)

STAGE = StageType(
    name="simpo", spec=SimPOStage, run=METHOD.run, data_kinds=("preference",), data_kinds_for=pairwise_data_kinds,
    held_out_objective=METHOD.held_out_objective,
    panels=(Panel("reward margin (chosen − rejected, β·mean log p)", ("rewards/margins",)),
            Panel("preference accuracy", ("rewards/accuracies",))),
)
