"""What the report draws for a stage type: training-curve panels, declared on `StageType.panels`.

The report reads files only and sits below `stages/`, so it never asks the
registry: the runner records a stage type's panels in the stage's `stage.json`
(`report.panels`, see `report_record`) and the report reads them back with
`panels_from_record`. A stage recorded before panels were declared gets the
panels every training stage has (`COMMON_PANELS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Panel:
    """One panel of a stage's training-curve figure: the metrics.jsonl keys drawn together under a title."""

    title: str
    keys: tuple[str, ...]
    """Keys as the trainer logs them; a `*` matches one path segment (GRPO's `rewards/<fn>/mean`)."""
    when_absent: str = ""
    """Said under the figure when the stage logged curves but none of `keys`, so that the missing panel is
    not read as a failure (GRPO with beta 0 logs no KL)."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Panel:
        return cls(str(data["title"]), tuple(str(k) for k in data["keys"]), str(data.get("when_absent") or ""))


COMMON_PANELS: tuple[Panel, ...] = (
    Panel("loss", ("loss", "eval_loss")),
    Panel("learning rate", ("learning_rate",)),
    Panel("grad norm", ("grad_norm",)),
)
"""Panels every training stage gets (transformers' Trainer logs these keys), before its type's own."""


def report_record(panels: Sequence[Panel]) -> dict[str, Any]:
    """The `report` block of stage.json: what the report draws for this stage."""
    return {"panels": [p.to_dict() for p in panels]}


def panels_from_record(record: Mapping[str, Any]) -> tuple[Panel, ...]:
    """The panels a stage.json record asks for: the common ones, then its type's declared ones (if recorded)."""
    declared = (record.get("report") or {}).get("panels") or []
    own = tuple(Panel.from_dict(p) for p in declared if isinstance(p, Mapping) and "title" in p and "keys" in p)
    return COMMON_PANELS + tuple(p for p in own if p not in COMMON_PANELS)
