"""What a stage type is made of, below the stages themselves: spec building blocks, the context a stage
runs in, what it hands back, and the declaration that registers it (`StageType`)."""

from posttrain.stagekit.context import StageContext, StageResult
from posttrain.stagekit.declaration import StageType
from posttrain.stagekit.display import Panel
from posttrain.stagekit.facts import StageFacts
from posttrain.stagekit.objective import HeldOutObjective

__all__ = ["HeldOutObjective", "Panel", "StageContext", "StageFacts", "StageResult", "StageType"]
