"""`ExportJob`: one stage's export as every format writer sees it.

It sits below the writers (`export/formats/`) and the dispatcher
(`export/artifacts.py`) so both name its type; it carries the model settings
(`ModelSpec`) rather than the whole recipe, so export needs nothing from
`recipe/`, which sits above it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posttrain.errors import UserError

if TYPE_CHECKING:  # both pull in torch; the registry of formats stays cheap to collect
    from transformers import PreTrainedTokenizerBase

    from posttrain.models.lineage import Lineage
    from posttrain.stagekit.specs import ModelSpec


@dataclass
class ExportJob:
    out: Path
    """The stage's export folder; each format writes `out/<format>/`."""
    recipe_name: str
    stage_name: str
    chain: list[str]
    """Stages whose weights make up the model, oldest first."""
    lineage: Lineage
    model: ModelSpec
    """The recipe's `model:` block: base reference, dtype, trust_remote_code."""
    tokenizer: PreTrainedTokenizerBase
    card: dict[str, Any]
    """The facts every model card of the export states (`model_card.model_card` keyword arguments)."""
    paths: dict[str, str] = field(default_factory=dict)
    """Format -> the folder it wrote."""
    serving: dict[str, str] = field(default_factory=dict)
    """Format -> the markdown section on serving it, shown on every model card of the export."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Format -> its settings from the recipe's `export:` block (`{"gguf": {"quants": ["q4_k_m"]}}`)."""

    def setting(self, fmt: str, key: str, default: Any = None) -> Any:
        return self.settings.get(fmt, {}).get(key, default)

    @property
    def name(self) -> str:
        return f"{self.recipe_name}/{self.stage_name}"

    @property
    def engine_name(self) -> str:
        """A name engines accept for this model (`dpo-sft`): the recipe and stage, lower case."""
        return re.sub(r"[^a-z0-9._-]+", "-", f"{self.recipe_name}-{self.stage_name}".lower())

    def folder(self, fmt: str) -> Path:
        return self.out / fmt

    def base_config(self) -> dict[str, Any]:
        """The base's Hugging Face `config.json` (engine formats need the weights as a local folder)."""
        path = Path(self.lineage.base) / "config.json"
        if not path.exists():
            raise UserError(f"engine exports need the base weights as a local Hugging Face folder; {path} does not exist")
        return json.loads(path.read_text())

    def architecture(self) -> str:
        return (self.base_config().get("architectures") or ["?"])[0]
