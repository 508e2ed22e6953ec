"""What a stage receives (`StageContext`) and what it hands back (`StageResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.models.lineage import Lineage, load_quantized, materialize
from posttrain.models.precision import Purpose
from posttrain.run_layout import RunDir
from posttrain.stagekit.specs import EvalSpec, ModelSpec


@dataclass
class StageContext:
    """Everything a stage may use; stages never reach into the pipeline or each other."""

    model_spec: ModelSpec
    """The recipe's `model:` block: dtype and loading switches for every model the stage loads."""
    eval_spec: EvalSpec
    """The recipe's `eval:` block (a distill stage evaluates an outside teacher with it)."""
    seed: int
    stage_dir: Path
    input: Lineage
    """The model this stage starts from: base plus the merged adapters of earlier stages."""
    tokenizer: Any
    datasets: dict[str, Any]
    """Prepared datasets (data_prep.PreparedDataset) by recipe name."""
    console: Console
    callbacks: list[Any] = field(default_factory=list)
    """Trainer callbacks the pipeline wants on every trainer (metrics file, NaN guard, progress)."""
    resume_from: Path | None = None
    """A checkpoint of this same stage (same fingerprint) left by a killed run."""
    input_name: str = "base"
    """Name of the stage `input` comes from (`base` for the base model)."""
    earlier: dict[str, Lineage] = field(default_factory=dict)
    """Lineages of `base` and of every stage run before this one, by name (a distill teacher may name one)."""
    base_dir: Path = field(default_factory=Path.cwd)
    """The recipe file's folder: relative paths in the recipe (reward files, ...) resolve against it."""

    @property
    def checkpoints_dir(self) -> Path:
        return self.stage_dir / RunDir.CHECKPOINTS

    @property
    def adapter_dir(self) -> Path:
        return self.stage_dir / RunDir.ADAPTER

    @property
    def model_dir(self) -> Path:
        return self.stage_dir / RunDir.MODEL

    def load_input_model(self, *, trains_adapter: bool = False) -> Any:
        """The model to train: the input lineage, in NF4 when the recipe asks for QLoRA.

        A LoRA's frozen base may load in bf16 (`dtype: auto`, posttrain.models.precision); trained weights not.
        """
        if self.model_spec.quantize == "4bit":
            return load_quantized(
                self.input, dtype=self.model_spec.dtype, trust_remote_code=self.model_spec.trust_remote_code,
                scratch=self.stage_dir / "input-merged",
            )
        return self.load(self.input, purpose="adapter" if trains_adapter else "full")

    def load(self, lineage: Lineage, *, purpose: Purpose = "full") -> Any:
        """A lineage as one model, loaded with the recipe's dtype and trust settings."""
        return materialize(
            lineage, dtype=self.model_spec.dtype, trust_remote_code=self.model_spec.trust_remote_code, purpose=purpose
        )

    def dataset(self, name: str) -> Any:
        return self.datasets[name]

    def lineage_of(self, name: str) -> Lineage | None:
        """The model of `base` or of an earlier stage; None when no such stage ran before this one."""
        return self.input if name == self.input_name else self.earlier.get(name)


@dataclass
class StageResult:
    lineage: Lineage
    """The trained model as a lineage (for the next stage, eval and export)."""
    model: Any = None
    """The trained model in memory, so it can be evaluated without reloading."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Final training metrics (train_loss, runtime, ...)."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Typed facts about the stage for the leaderboard, by kind (`{"distill": DistillFacts(...)}`)."""
