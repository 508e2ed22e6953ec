"""`StageType`: the one declaration a stage module makes about itself.

The recipe schema, the recipe's cross-reference checks, the plan and the
runner all read stage types from these declarations (collected in
`posttrain.stages.STAGES`); nothing else lists stage types. What the report and
the leaderboard show of a stage type is declared here too (`panels`, `facts`):
they sit below `stages/`, so they get it from the run's files (panels, recorded
in stage.json) or from the typed facts themselves, never by a type's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from posttrain.stagekit.context import StageContext, StageResult
from posttrain.stagekit.display import Panel, report_record
from posttrain.stagekit.facts import StageFacts
from posttrain.stagekit.objective import HeldOutObjective
from posttrain.stagekit.specs import StageCommon

DataNeed = tuple[tuple[str, ...], str]
"""(dataset kinds a stage accepts, hint shown when the dataset is of another kind)."""


@dataclass(frozen=True)
class StageType:
    name: str
    """The `type:` a recipe writes."""
    spec: type[StageCommon]
    """The pydantic model of the stage's YAML block; its `type` field is `Literal[name]`."""
    run: Callable[[StageContext, Any], StageResult]
    data_kinds: tuple[str, ...]
    """Dataset kinds (data_prep's `kind`) the stage trains on."""
    data_kinds_for: Callable[[Mapping[str, Any]], DataNeed] | None = None
    """When the accepted kinds depend on the stage's settings: computed from its raw YAML mapping."""
    held_out_objective: Callable[[StageContext, Any, Any], HeldOutObjective | None] | None = None
    """What the stage optimizes, measured on the held-out split of its dataset (SFT held-out loss, DPO
    preference accuracy and margin, GRPO rewards, distillation divergence): `(ctx, spec, trained) ->
    HeldOutObjective` with the values before the stage and after it, or None when the dataset has no
    held-out rows. `trained` is the stage's model; the function itself finds what "before" means (the
    input model, or a distilled student before training), so it can reuse what both measurements share
    (DPO's reference log-probabilities). The pipeline caches the result in `objective.json` under the
    stage's fingerprint and shows it beside the benchmarks."""
    model_inputs: tuple[str, ...] = ()
    """Spec fields that name another model the stage reads besides its input: an earlier stage, `base`
    or a model reference (a distill `teacher`). An earlier stage named there is a dependency: its
    fingerprint enters this stage's, and forcing it reruns this stage."""
    panels: tuple[Panel, ...] = ()
    """The stage type's own training-curve panels (its trainer's logged keys), drawn after the loss, learning
    rate and grad norm every stage gets. The runner records them in stage.json, so the report draws them for
    any stage type, a plug-in's too, and a run directory reports the same without this code."""
    facts: tuple[type[StageFacts], ...] = ()
    """The typed facts `run` returns in `StageResult.facts`, each declaring its own leaderboard table
    (distill: teacher → student params and speed, retention)."""

    def accepted_kinds(self, raw: Mapping[str, Any]) -> DataNeed:
        return self.data_kinds_for(raw) if self.data_kinds_for else (self.data_kinds, "")

    def report_record(self) -> dict[str, Any]:
        """What stage.json keeps (under `report`) for the report to draw this stage."""
        return report_record(self.panels)
