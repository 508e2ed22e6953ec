"""Stage implementations: one module per stage type, each exposing `run(ctx, spec) -> StageResult`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from posttrain.stages import distill, dpo, grpo, sft
from posttrain.stages.context import StageContext, StageResult

StageFn = Callable[[StageContext, Any], StageResult]

STAGES: dict[str, StageFn] = {
    "sft": sft.run,
    "dpo": dpo.run,
    "grpo": grpo.run,
    "distill": distill.run,
}
"""Stage type → implementation. The recipe schema's STAGE_TYPES has the same keys (a test checks)."""

__all__ = ["STAGES", "StageContext", "StageResult"]
