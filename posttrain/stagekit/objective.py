"""A stage's held-out objective: what it optimized, measured before and after it on its data's held-out split."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from posttrain.stagekit.context import StageContext

HELD_OUT_MAX_ROWS = 64
"""At most this many held-out rows are measured (the first ones of the shuffled split): a bounded cost."""


@dataclass(frozen=True)
class HeldOutObjective:
    """Metric → value for the model before the stage and for the trained one, on the same held-out rows."""

    before: dict[str, float]
    after: dict[str, float]
    rows: int
    """How many held-out rows (pairs, prompts, conversations) were measured."""
    change_stderr: dict[str, float] = field(default_factory=dict)
    """Standard error of after − before per metric, from the per-row paired differences."""
    before_is: str = "input"
    """What `before` measured: the stage's input model, or (distillation) the student before training."""
    lower_is_better: tuple[str, ...] = ()
    """Metrics that improve by going down (losses, divergences); every other one improves by going up."""
    notes: list[str] = field(default_factory=list)
    """What a reader needs to read the numbers (e.g. a DPO reward margin is 0 for the reference by definition)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeldOutObjective:
        return cls(**{**data, "lower_is_better": tuple(data.get("lower_is_better", ()))})

    def deltas(self) -> dict[str, float]:
        """after − before, for the metrics measured on both."""
        return {k: self.after[k] - v for k, v in self.before.items() if k in self.after}

    def improved(self, metric: str) -> bool | None:
        """Whether the metric moved the way the stage optimizes it (None when it did not move or is missing)."""
        delta = self.deltas().get(metric)
        if delta is None or delta == 0:
            return None
        return (delta < 0) == (metric in self.lower_is_better)

    def significant(self, metric: str) -> bool | None:
        """Whether the change is outside its 95% noise band (|Δ| > 1.96·stderr); None without an error estimate."""
        delta, stderr = self.deltas().get(metric), self.change_stderr.get(metric)
        if delta is None or stderr is None or math.isnan(stderr):
            return None
        return abs(delta) > 1.96 * stderr


def held_out_rows(ctx: StageContext, data: str) -> list[dict[str, Any]]:
    """The first rows of dataset `data`'s held-out split (its eval.jsonl), at most HELD_OUT_MAX_ROWS; [] if none."""
    from data_prep import read_rows

    path = ctx.dataset(data).eval_path
    if path is None or not path.exists():
        return []
    return read_rows(path)[:HELD_OUT_MAX_ROWS]


@contextmanager
def input_model(ctx: StageContext, trained: Any) -> Iterator[Any]:
    """The stage's input model: the trained LoRA model with its adapter switched off, or the input loaded anew.

    The input's own adapters are merged into the weights a LoRA stage trains
    on, so switching the new adapter off gives the input model exactly, with
    no second copy in memory.
    """
    if getattr(trained, "peft_config", None) and hasattr(trained, "disable_adapter"):
        with trained.disable_adapter():
            yield trained
    else:
        model = ctx.load_input_model()
        model.eval()
        yield model
