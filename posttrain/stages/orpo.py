"""ORPO: supervised fine-tuning and preference learning in one stage, with no reference model.

TRL's ORPOTrainer (trl.experimental) minimizes the SFT loss on the chosen
answer plus λ times an odds-ratio term that pushes the odds of the chosen
answer above those of the rejected one (Hong et al. 2024). It compares the
model only with itself, so it needs no reference model and no SFT stage
before it: a `reference` setting is refused.

Pairs (or, with `on_policy`, pairs sampled from the input model), training
and the held-out objective are the pairwise core's (training/pairwise.py);
this module says what ORPO sets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, model_validator

from posttrain.stagekit import StageType
from posttrain.stagekit.display import Panel
from posttrain.stagekit.specs import PairwiseCommon, refuse_reference
from posttrain.training.pairwise import PairwiseMethod, pairwise_data_kinds


class ORPOStage(PairwiseCommon):
    type: Literal["orpo"]
    beta: PositiveFloat = Field(
        0.1,
        description="λ of the ORPO paper (TRL's `beta`): weight of the odds-ratio preference term added to "
        "the SFT loss on the chosen answer.",
    )

    @model_validator(mode="before")
    @classmethod
    def _reference_free(cls, data: Any) -> Any:
        return refuse_reference(data, method="ORPO", why="its odds ratio compares the model with itself")


METHOD = PairwiseMethod(
    name="ORPO", config="trl.experimental.orpo:ORPOConfig", trainer="trl.experimental.orpo:ORPOTrainer",
    # The pair collator needs the chosen_/rejected_ columns.
    arguments=lambda spec: {"beta": spec.beta, "remove_unused_columns": False},
    reference=False,
)

STAGE = StageType(
    name="orpo", spec=ORPOStage, run=METHOD.run, data_kinds=("preference",), data_kinds_for=pairwise_data_kinds,
    held_out_objective=METHOD.held_out_objective,
    panels=(Panel("reward margin (chosen − rejected, β·mean log p)", ("rewards/margins",)),
            Panel("preference accuracy", ("rewards/accuracies",)),
            Panel("log odds ratio (chosen vs rejected)", ("log_odds_ratio",)),
            Panel("SFT loss on chosen", ("nll_loss",))),
)
