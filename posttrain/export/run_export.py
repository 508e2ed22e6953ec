"""`posttrain export RUN`: export a finished run's stage again, in any formats, from its run directory alone.

Everything comes from the run directory, through `RunDir`: the resolved recipe
(model, stage order), each stage's state (`input`, fingerprint) and lineage
(rebuilt from where its folders are today, so a moved run directory still
exports), and the saved scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import UserError
from posttrain.export.artifacts import export_stage
from posttrain.export.formats import expand_formats
from posttrain.export.llama_cpp import QUANT_FTYPES
from posttrain.models.loading import load_tokenizer
from posttrain.run_layout import BASE, RunDir
from posttrain.rundir import read_json
from posttrain.stagekit.specs import ModelSpec


def export_run(
    run_dir: Path, stage: str | None, formats: list[str], out: Path | None = None, quants: list[str] | None = None,
) -> dict[str, str]:
    """Export `stage` (default: the last completed one) of the run in `run_dir`; returns format -> path.

    The formats' settings are the run's recipe's `export:` block; `quants` replaces its `gguf.quants`.
    """
    expand_formats(formats)  # an unknown format (or quant) fails before any model is loaded
    unknown = [q for q in quants or [] if q not in QUANT_FTYPES]
    if unknown:
        raise UserError(f"unknown GGUF quantization(s) {', '.join(unknown)}; choose from {', '.join(QUANT_FTYPES)}")
    run = RunDir(run_dir)
    recipe = _load_recipe(run)
    stage_name = _pick_stage(run, stage)
    lineage = run.lineage(stage_name)
    # The base folder (or a full model's folder, saved with its tokenizer) has the tokenizer stages trained with.
    tokenizer = load_tokenizer(lineage.base, trust_remote_code=recipe.model.trust_remote_code)
    status = run.read_stage(stage_name) or {}
    scores, stderrs = saved_scores(run.stage_dir(stage_name))
    base_scores, _ = saved_scores(run.stage_dir(BASE))
    return export_stage(
        stage_dir=run.stage_dir(stage_name), stage_name=stage_name, chain=run.chain(stage_name), lineage=lineage,
        stage_fingerprint=status.get("fingerprint", ""), scores=scores, base_scores=base_scores,
        recipe_name=recipe.name, model=recipe.model, tokenizer=tokenizer, formats=formats, out=out, stderrs=stderrs,
        recipe_path=str(run.recipe_file), settings=recipe.settings(quants),
    )


@dataclass(frozen=True)
class RunRecipe:
    """What an export needs of the run's resolved recipe (read as data: `recipe/` sits above `export/`)."""

    name: str
    model: ModelSpec
    export: dict[str, Any] = field(default_factory=dict)
    """The recipe's `export:` block as written in the resolved recipe."""

    def settings(self, quants: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Format -> its settings block (`ExportJob.settings`); `quants` replaces `gguf.quants`."""
        settings = {name: dict(block) for name, block in self.export.items() if isinstance(block, dict)}
        if quants:
            settings.setdefault("gguf", {})["quants"] = list(quants)
        return settings


def _load_recipe(run: RunDir) -> RunRecipe:
    if not run.root.is_dir():
        raise UserError(f"no run directory at {run.root} (give the folder `posttrain run` wrote, e.g. runs/<name>)")
    if not run.recipe_file.exists():
        raise UserError(f"{run.root} is not a posttrain run directory: it has no {run.recipe_file.name}")
    try:
        raw = run.recipe()
        return RunRecipe(str(raw["name"]), ModelSpec.model_validate(raw["model"]), dict(raw.get("export") or {}))
    except Exception as exc:  # a hand-edited or foreign file: say which one
        raise UserError(f"{run.recipe_file} does not load as a recipe: {exc}") from exc


def _pick_stage(run: RunDir, stage: str | None) -> str:
    names = run.stages()
    if stage is None:
        last = run.last_completed_stage()
        if last is None:
            raise UserError(f"run {run.root} has no completed stage to export (stages: {', '.join(names)})")
        return last
    if stage not in names:
        raise UserError(f"run {run.root} has no stage {stage!r}; its stages are {', '.join(names)}")
    if not run.is_completed(stage):
        raise UserError(f"stage {stage!r} of {run.root} has not completed; rerun `posttrain run` first")
    return stage


def saved_scores(folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Headline scores and, where lm-eval gave one, the standard error of each."""
    saved = read_json(folder / RunDir.EVAL) or {}
    scores = saved.get("scores", {})
    results = saved.get("results", {})
    stderrs = {}
    for task in scores:
        metric = (results.get("primary") or {}).get(task)
        err = ((results.get("tasks") or {}).get(task) or {}).get(f"{metric}_stderr") if metric else None
        if isinstance(err, (int, float)):
            stderrs[task] = float(err)
    return scores, stderrs
