"""Export one stage in the requested formats, reusing the formats already up to date.

Each format is a declaration in `export/formats/` (`EXPORT_FORMATS`) and
writes `<out>/<format>/`. `export.json` records the stage fingerprint (with the
scores the model cards state) and, per format written under it, its folder,
its serving section and the command that serves it (the report reads these);
a new fingerprint (retrained stage, new scores) clears the folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posttrain.export.formats import EXPORT_FORMATS, formats_for_stage
from posttrain.export.job import ExportJob
from posttrain.export.model_card import model_card
from posttrain.fingerprint import fingerprint
from posttrain.run_layout import RunDir
from posttrain.rundir import read_json, write_json

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from posttrain.models.lineage import Lineage
    from posttrain.stagekit.specs import ModelSpec

INDEX = "export.json"


def export_stage(
    *,
    stage_dir: Path,
    stage_name: str,
    chain: list[str],
    lineage: Lineage,
    stage_fingerprint: str,
    scores: dict[str, float],
    base_scores: dict[str, float],
    recipe_name: str,
    model: ModelSpec,
    tokenizer: PreTrainedTokenizerBase,
    formats: Iterable[str],
    final: bool = True,
    out: Path | None = None,
    stderrs: dict[str, float] | None = None,
    recipe_path: str | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Write the requested formats under `out` (default `stage_dir/export/`); skip what is up to date.

    `final` is false for a run's stages before the last: they get whole-model formats only when they trained
    a whole model (see `ExportFormat.whole_model`). `settings` are the formats' settings from the recipe's
    `export:` block (`{"gguf": {"quants": [...]}}`). Returns format -> folder.
    """
    out = out or stage_dir / RunDir.EXPORT
    wanted = formats_for_stage(formats, final=final, has_adapter=bool(lineage.adapters))
    marker = fingerprint(stage_fingerprint, scores)
    done = read_json(out / INDEX) or {}
    if done.get("fingerprint") != marker:
        shutil.rmtree(out, ignore_errors=True)
        done = {}
    job = ExportJob(
        out=out, recipe_name=recipe_name, stage_name=stage_name, chain=chain, lineage=lineage, model=model,
        tokenizer=tokenizer, paths=_where_now(done.get("paths", {}), out), serving=dict(done.get("serving", {})),
        card=dict(
            base_ref=model.base, base_path=lineage.base, recipe_name=recipe_name, stage=stage_name, chain=chain,
            scores=scores, base_scores=base_scores, adapters=lineage.adapters, stderrs=stderrs, recipe_path=recipe_path,
        ),
        settings=dict(settings or {}),
    )
    for fmt in wanted:  # what an engine would refuse is said before anything of this export is written
        if fmt.check:
            fmt.check(job)
    written = list(done.get("formats", []))
    serve = dict(done.get("serve", {}))
    fresh: set[str] = set()
    for fmt in wanted:
        if fmt.name in written and not fresh.intersection(fmt.needs) and fmt.reusable(job):
            if fmt.serve and fmt.name in job.paths:  # said with where the folder is now
                serve[fmt.name] = fmt.serve(job, Path(job.paths[fmt.name]))
            continue
        fmt.write(job)
        fresh.add(fmt.name)
        folder = Path(job.paths[fmt.name])
        if fmt.serve:
            serve[fmt.name] = fmt.serve(job, folder)
        written = [*(w for w in written if w != fmt.name), fmt.name]
        write_json(out / INDEX, {"fingerprint": marker, "formats": written, "paths": job.paths,
                                 "serving": job.serving, "serve": serve})
    if written:  # every card lists every engine this export serves with, whichever format came last
        write_json(out / INDEX, {"fingerprint": marker, "formats": written, "paths": job.paths,
                                 "serving": job.serving, "serve": serve})  # paths and commands as they are now
        _refresh_cards(job)
    return {fmt.name: job.paths[fmt.name] for fmt in wanted if fmt.name in job.paths}


def _where_now(paths: dict[str, str], out: Path) -> dict[str, str]:
    """The index's format folders (each `<out>/<format>`) where `out` is now: a run directory moved or copied
    elsewhere reuses its exports in place, not at the paths they were written to."""
    return {name: str(out / Path(path).name) for name, path in paths.items()}


def _refresh_cards(job: ExportJob) -> None:
    sections = [job.serving[name] for name in EXPORT_FORMATS if name in job.serving]
    for name, fmt in EXPORT_FORMATS.items():
        if name in job.paths:
            folder = Path(job.paths[name])
            (folder / "README.md").write_text(model_card(
                title=f"{job.name} — {fmt.title}", how_to_load=fmt.load(job, folder), serving=sections, **job.card
            ))
