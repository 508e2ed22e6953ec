"""Export each stage: its cumulative adapter on the base (PEFT) and, for the last stage, a merged model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from posttrain.export.model_card import model_card
from posttrain.fingerprint import fingerprint
from posttrain.models.lineage import Lineage, cumulative_adapter, materialize
from posttrain.rundir import read_json, write_json


def export_stage(
    *,
    stage_dir: Path,
    stage_name: str,
    chain: list[str],
    lineage: Lineage,
    stage_fingerprint: str,
    scores: dict[str, float],
    base_scores: dict[str, float],
    recipe: Any,
    tokenizer: Any,
    formats: set[str],
) -> dict[str, str]:
    """Write the requested formats under `stage_dir/export/`; skip what is already up to date."""
    out = stage_dir / "export"
    marker = fingerprint(stage_fingerprint, scores, sorted(formats))
    done = read_json(out / "export.json")
    if done and done.get("fingerprint") == marker:
        return done["paths"]
    shutil.rmtree(out, ignore_errors=True)
    card = dict(
        base_ref=recipe.model.base, base_path=lineage.base, recipe_name=recipe.name, stage=stage_name,
        chain=chain, scores=scores, base_scores=base_scores,
    )
    paths: dict[str, str] = {}
    if "peft" in formats and lineage.adapters:
        peft_dir = cumulative_adapter(lineage.adapters, out / "peft", base_model=lineage.base)
        (peft_dir / "README.md").write_text(
            model_card(
                title=f"{recipe.name}/{stage_name} — LoRA adapter",
                how_to_load=(
                    "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
                    f"base = AutoModelForCausalLM.from_pretrained({lineage.base!r})\n"
                    f"model = PeftModel.from_pretrained(base, {str(peft_dir)!r})"
                ),
                **card,
            )
        )
        paths["peft"] = str(peft_dir)
    if "merged" in formats:
        merged_dir = out / "merged"
        model = materialize(
            lineage, dtype=recipe.model.dtype, trust_remote_code=recipe.model.trust_remote_code, purpose="export"
        )
        model.save_pretrained(merged_dir, safe_serialization=True)
        model.generation_config.save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        (merged_dir / "README.md").write_text(
            model_card(
                title=f"{recipe.name}/{stage_name} — merged model",
                how_to_load=f"from transformers import AutoModelForCausalLM\nAutoModelForCausalLM.from_pretrained({str(merged_dir)!r})",
                **card,
            )
        )
        paths["merged"] = str(merged_dir)
    write_json(out / "export.json", {"fingerprint": marker, "paths": paths})
    return paths
