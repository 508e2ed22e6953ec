"""What a stage type is made of, below the stages themselves: spec building blocks, the context a stage
runs in, what it hands back, and the declaration that registers it (`StageType`)."""

from posttrain.stagekit.context import StageContext, StageResult
from posttrain.stagekit.declaration import StageType
from posttrain.stagekit.facts import DistillFacts
from posttrain.stagekit.objective import HeldOutObjective

__all__ = ["DistillFacts", "HeldOutObjective", "StageContext", "StageResult", "StageType"]
