"""`posttrain export RUN`: export a finished run's stage again, in any formats, from its run directory alone.

Everything comes from the run directory: `recipe.resolved.yaml` (model, stage
order), each stage's `stage.json` (`input`, fingerprint) and folder (an
`adapter/` extends its input's lineage, a `model/` starts a new one), and the
`eval.json` scores. Paths are rebuilt from where things are today, so a moved
run directory still exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from posttrain.errors import UserError
from posttrain.export.artifacts import export_stage
from posttrain.export.formats import expand_formats
from posttrain.models.lineage import ADAPTER_CONFIG, Lineage
from posttrain.models.loading import load_tokenizer
from posttrain.models.resolve import resolve_model
from posttrain.rundir import read_json
from posttrain.stagekit.specs import ModelSpec

RESOLVED_RECIPE = "recipe.resolved.yaml"


def export_run(run_dir: Path, stage: str | None, formats: list[str], out: Path | None = None) -> dict[str, str]:
    """Export `stage` (default: the last completed one) of the run in `run_dir`; returns format -> path."""
    expand_formats(formats)  # an unknown format fails before any model is loaded
    recipe = _load_recipe(run_dir)
    stage_name = _pick_stage(run_dir, recipe, stage)
    chain = _chain(run_dir, stage_name)
    lineage = _lineage(run_dir, recipe, chain)
    # The base folder (or a full model's folder, saved with its tokenizer) has the tokenizer stages trained with.
    tokenizer = load_tokenizer(lineage.base, trust_remote_code=recipe.model.trust_remote_code)
    status = read_json(run_dir / stage_name / "stage.json") or {}
    scores, stderrs = saved_scores(run_dir / stage_name)
    base_scores, _ = saved_scores(run_dir / "base")
    return export_stage(
        stage_dir=run_dir / stage_name, stage_name=stage_name, chain=chain, lineage=lineage,
        stage_fingerprint=status.get("fingerprint", ""), scores=scores, base_scores=base_scores,
        recipe_name=recipe.name, model=recipe.model, tokenizer=tokenizer, formats=formats, out=out, stderrs=stderrs,
        recipe_path=str(run_dir / RESOLVED_RECIPE),
    )


@dataclass(frozen=True)
class RunRecipe:
    """What an export needs of the run's resolved recipe (read as data: `recipe/` sits above `export/`)."""

    name: str
    model: ModelSpec
    stage_names: list[str]


def _load_recipe(run_dir: Path) -> RunRecipe:
    path = run_dir / RESOLVED_RECIPE
    if not run_dir.is_dir():
        raise UserError(f"no run directory at {run_dir} (give the folder `posttrain run` wrote, e.g. runs/<name>)")
    if not path.exists():
        raise UserError(f"{run_dir} is not a posttrain run directory: it has no {RESOLVED_RECIPE}")
    try:
        raw = yaml.safe_load(path.read_text())
        return RunRecipe(str(raw["name"]), ModelSpec.model_validate(raw["model"]), [s["name"] for s in raw["stages"]])
    except Exception as exc:  # a hand-edited or foreign file: say which one
        raise UserError(f"{path} does not load as a recipe: {exc}") from exc


def _pick_stage(run_dir: Path, recipe: RunRecipe, stage: str | None) -> str:
    names = recipe.stage_names
    completed = [n for n in names if (read_json(run_dir / n / "stage.json") or {}).get("status") == "completed"]
    if stage is None:
        if not completed:
            raise UserError(f"run {run_dir} has no completed stage to export (stages: {', '.join(names)})")
        return completed[-1]
    if stage not in names:
        raise UserError(f"run {run_dir} has no stage {stage!r}; its stages are {', '.join(names)}")
    if stage not in completed:
        raise UserError(f"stage {stage!r} of {run_dir} has not completed; rerun `posttrain run` first")
    return stage


def _chain(run_dir: Path, stage_name: str) -> list[str]:
    """The stages whose weights make up `stage_name`, oldest first, back to the base or a full model."""
    chain, name = [], stage_name
    while name != "base":
        if name in chain:
            raise UserError(f"stage inputs in {run_dir} form a loop at {name!r}")
        status = read_json(run_dir / name / "stage.json")
        if status is None:
            raise UserError(f"{run_dir / name / 'stage.json'} is missing; the run directory is incomplete")
        chain.insert(0, name)
        if not (run_dir / name / "adapter" / ADAPTER_CONFIG).exists():
            break  # a full fine-tune or distilled student: its model/ starts the lineage
        name = status.get("input", "base")
    return chain


def _base_path(run_dir: Path, recipe: RunRecipe, chain: list[str]) -> str:
    model = recipe.model
    try:
        resolved = resolve_model(model.base, base_dir=Path.cwd(), prefer_hub=model.prefer_hub)
        if Path(resolved.path).exists():
            return resolved.path
    except UserError:
        pass
    recorded = ((read_json(run_dir / chain[0] / "stage.json") or {}).get("lineage") or {}).get("base")
    if recorded and Path(recorded).exists():
        return recorded
    raise UserError(f"cannot find the base model {model.base!r} of {run_dir} (not resolvable from here, "
                    f"and the recorded path {recorded!r} is gone)")


def _lineage(run_dir: Path, recipe: RunRecipe, chain: list[str]) -> Lineage:
    first = run_dir / chain[0]
    if not (first / "adapter" / ADAPTER_CONFIG).exists():  # a full model, then the adapters trained on it
        return Lineage(str(first / "model"), [str(run_dir / n / "adapter") for n in chain[1:]])
    return Lineage(_base_path(run_dir, recipe, chain), [str(run_dir / n / "adapter") for n in chain])


def saved_scores(folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Headline scores and, where lm-eval gave one, the standard error of each."""
    saved = read_json(folder / "eval.json") or {}
    scores = saved.get("scores", {})
    results = saved.get("results", {})
    stderrs = {}
    for task in scores:
        metric = (results.get("primary") or {}).get(task)
        err = ((results.get("tasks") or {}).get(task) or {}).get(f"{metric}_stderr") if metric else None
        if isinstance(err, (int, float)):
            stderrs[task] = float(err)
    return scores, stderrs
