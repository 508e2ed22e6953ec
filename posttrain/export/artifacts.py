"""Export one stage in the requested formats, reusing the formats already up to date.

    <out>/peft/      the stage's cumulative adapter on the base (PEFT)
    <out>/merged/    base with every adapter merged (transformers)
    <out>/vllm/      manifest.json + README.md: the `vllm serve` command (uses peft/)
    <out>/gguf/      model-f16.gguf, model-q8_0.gguf (merged); base-f16.gguf + adapter-f16.gguf
    <out>/ollama/    Modelfile (merged q8_0) and Modelfile.adapter (base + ADAPTER)

`export.json` records the stage fingerprint and the formats written under it;
a new fingerprint (retrained stage, new scores) clears the folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.export import engine_formats
from posttrain.export.model_card import model_card
from posttrain.fingerprint import fingerprint
from posttrain.models.lineage import Lineage, cumulative_adapter, materialize
from posttrain.rundir import read_json, write_json

FORMATS = ("peft", "merged", "vllm", "gguf", "ollama")
_NEEDS = {"vllm": ("peft",), "gguf": ("peft",), "ollama": ("gguf",)}


def expand_formats(formats: list[str] | set[str]) -> list[str]:
    """The formats to write, in dependency order (vllm serves peft/, gguf converts it, ollama loads gguf/)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    wanted = set(formats)
    for fmt in reversed(FORMATS):  # a format's needs come before it in FORMATS: one pass reaches them all
        if fmt in wanted:
            wanted.update(_NEEDS.get(fmt, ()))
    return [f for f in FORMATS if f in wanted]


@dataclass
class StageExport:
    """Everything an export of one stage needs to know."""

    out: Path
    name: str
    stage_name: str
    chain: list[str]
    lineage: Lineage
    recipe: Any
    tokenizer: Any
    card: dict[str, Any]
    paths: dict[str, str] = field(default_factory=dict)
    serving: dict[str, str] = field(default_factory=dict)

    def write_card(self, folder: Path, title: str, how_to_load: str) -> None:
        sections = [self.serving[k] for k in ("vllm", "llama.cpp", "ollama") if k in self.serving]
        (folder / "README.md").write_text(
            model_card(title=f"{self.name} — {title}", how_to_load=how_to_load, serving=sections, **self.card)
        )


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
    formats: set[str] | list[str],
    out: Path | None = None,
    stderrs: dict[str, float] | None = None,
    recipe_path: str | None = None,
) -> dict[str, str]:
    """Write the requested formats under `out` (default `stage_dir/export/`); skip what is up to date."""
    out = out or stage_dir / "export"
    ordered = expand_formats(formats)
    marker = fingerprint(stage_fingerprint, scores)
    done = read_json(out / "export.json") or {}
    if done.get("fingerprint") != marker:
        shutil.rmtree(out, ignore_errors=True)
        done = {"fingerprint": marker, "formats": [], "paths": {}, "serving": {}}
    job = StageExport(
        out=out, name=f"{recipe.name}/{stage_name}", stage_name=stage_name, chain=chain, lineage=lineage,
        recipe=recipe, tokenizer=tokenizer, paths=dict(done.get("paths", {})), serving=dict(done.get("serving", {})),
        card=dict(
            base_ref=recipe.model.base, base_path=lineage.base, recipe_name=recipe.name, stage=stage_name,
            chain=chain, scores=scores, base_scores=base_scores, adapters=lineage.adapters, stderrs=stderrs,
            recipe_path=recipe_path,
        ),
    )
    if "vllm" in ordered:  # vLLM's rules are checked before anything of this export is written
        engine_formats.check_vllm(job)
    written = list(done.get("formats", []))
    for fmt in ordered:
        if fmt in written:
            continue
        _WRITERS[fmt](job)
        written.append(fmt)
        write_json(out / "export.json", {"fingerprint": marker, "formats": written, "paths": job.paths,
                                         "serving": job.serving})
    if written:  # every card lists every engine this export serves with, whichever format came last
        _refresh_cards(job)
    return {fmt: job.paths[fmt] for fmt in ordered if fmt in job.paths}


def _write_peft(job: StageExport) -> None:
    if not job.lineage.adapters:
        return  # a full fine-tune has no adapter; merged/ is the artifact
    peft_dir = cumulative_adapter(job.lineage.adapters, job.out / "peft", base_model=job.lineage.base)
    job.paths["peft"] = str(peft_dir)


def _write_merged(job: StageExport) -> None:
    merged_dir = job.out / "merged"
    model = materialize(
        job.lineage, dtype=job.recipe.model.dtype, trust_remote_code=job.recipe.model.trust_remote_code, purpose="export"
    )
    model.save_pretrained(merged_dir, safe_serialization=True)
    model.generation_config.save_pretrained(merged_dir)
    job.tokenizer.save_pretrained(merged_dir)
    job.paths["merged"] = str(merged_dir)


def _refresh_cards(job: StageExport) -> None:
    if "peft" in job.paths:
        job.write_card(Path(job.paths["peft"]), "LoRA adapter", (
            "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
            f"base = AutoModelForCausalLM.from_pretrained({job.lineage.base!r})\n"
            f"model = PeftModel.from_pretrained(base, {job.paths['peft']!r})"
        ))
    if "merged" in job.paths:
        job.write_card(Path(job.paths["merged"]), "merged model", (
            "from transformers import AutoModelForCausalLM\n"
            f"AutoModelForCausalLM.from_pretrained({job.paths['merged']!r})"
        ))
    for fmt, title in (("vllm", "vLLM serving"), ("gguf", "GGUF for llama.cpp"), ("ollama", "Ollama Modelfile")):
        if fmt in job.paths:
            folder = Path(job.paths[fmt])
            job.write_card(folder, title, engine_formats.how_to_load(fmt, job))


_WRITERS = {
    "peft": _write_peft,
    "merged": _write_merged,
    "vllm": engine_formats.write_vllm,
    "gguf": engine_formats.write_gguf,
    "ollama": engine_formats.write_ollama,
}
