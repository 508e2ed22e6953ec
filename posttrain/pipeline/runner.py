"""Run a recipe: prepare data, then for each stage reuse or train, evaluate, export.

Reads top to bottom as the user sees it happen. The stage cache is keyed by
fingerprints (see `fingerprints_for`): an unchanged stage is reused, a changed
stage and everything after it run again.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain.errors import TrainingError, UserError
from posttrain.export.artifacts import export_stage
from posttrain.fingerprint import fingerprint, stage_fingerprint
from posttrain.models.lineage import Lineage, materialize
from posttrain.models.loading import load_tokenizer
from posttrain.models.resolve import ResolvedModel, resolve_model
from posttrain.pipeline.datasets import prepare_datasets
from posttrain.pipeline.evaluate import evaluate_cached
from posttrain.pipeline.leaderboard import LEADERBOARD_DB, publish_leaderboard
from posttrain.pipeline.plan import BASE, PlannedStage, downstream, plan_stages, upstream_fingerprint
from posttrain.recipe.loader import LoadedRecipe, dump_yaml
from posttrain.rundir import last_checkpoint, library_versions, read_json, write_json
from posttrain.stages import STAGES
from posttrain.stages.context import StageContext
from posttrain.training.callbacks import MetricsFile, NonFiniteLossGuard


@dataclass
class StageOutcome:
    name: str
    lineage: Lineage
    fingerprint: str
    input: str = ""
    cached: bool = False
    seconds: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)
    """Stages whose adapters make up this model, from the start of its lineage."""
    exports: dict[str, str] = field(default_factory=dict)


@dataclass
class RunReport:
    run_dir: Path
    base: StageOutcome
    stages: list[StageOutcome]
    seconds: float


def run_recipe(
    loaded: LoadedRecipe, *, runs_dir: Path, force: set[str] | None = None, console: Console | None = None
) -> RunReport:
    console = console or Console()
    started = time.time()
    recipe = loaded.recipe
    planned = plan_stages(recipe)
    force = set(force or ())
    unknown = force - {p.spec.name for p in planned}
    if unknown:
        raise UserError(f"--force names no stage of this recipe: {', '.join(sorted(unknown))}")

    # Absolute, because lineages store adapter paths and must survive a change of cwd.
    run_dir = (runs_dir / recipe.name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.resolved.yaml").write_text(dump_yaml(recipe.model_dump(mode="json")))

    with console.status("Resolving the base model (first use dequantizes embedded weights)..."):
        base = resolve_model(recipe.model.base, base_dir=loaded.base_dir, prefer_hub=recipe.model.prefer_hub)
    tokenizer = load_tokenizer(base.path, trust_remote_code=recipe.model.trust_remote_code)
    datasets = prepare_datasets(loaded, run_dir=run_dir, tokenizer=tokenizer, console=console)

    base_outcome = StageOutcome(BASE, Lineage(base.path), fingerprint=base_fingerprint(loaded, base))
    if recipe.eval.on_base:
        base_outcome.scores = evaluate_cached(
            loaded, run_dir / BASE, base_outcome.fingerprint, lambda: _materialize(loaded, base_outcome.lineage),
            tokenizer=tokenizer, console=console, label="base",
        )

    outcomes: dict[str, StageOutcome] = {BASE: base_outcome}
    rerun = downstream(planned, force)
    for stage in planned:
        source = outcomes[stage.input]
        upstream_fp = upstream_fingerprint(stage, {name: o.fingerprint for name, o in outcomes.items()})
        stage_fp = stage_fingerprint(stage.spec, upstream_fp, datasets[stage.spec.data].fingerprint, recipe.seed)
        outcome, model = _run_or_reuse(
            loaded, stage, source, stage_fp, run_dir=run_dir, datasets=datasets, tokenizer=tokenizer,
            forced=stage.spec.name in rerun, console=console,
            earlier={name: o.lineage for name, o in outcomes.items()},
        )
        if stage.spec.evaluate:
            outcome.scores = evaluate_cached(
                loaded, run_dir / stage.spec.name, stage_fp,
                (lambda m=model, o=outcome: m if m is not None else _materialize(loaded, o.lineage)),
                tokenizer=tokenizer, console=console, label=stage.spec.name,
            )
        del model
        gc.collect()
        outcome.input = stage.input
        outcome.chain = [stage.spec.name] if stage.spec.full_finetune else [*source.chain, stage.spec.name]
        outcomes[stage.spec.name] = outcome

    stage_outcomes = [outcomes[p.spec.name] for p in planned]
    formats = set(recipe.export.formats)
    with console.status("Exporting adapters..."):
        for outcome in stage_outcomes:
            is_last = outcome is stage_outcomes[-1]
            outcome.exports = export_stage(
                stage_dir=run_dir / outcome.name, stage_name=outcome.name, chain=outcome.chain,
                lineage=outcome.lineage, stage_fingerprint=outcome.fingerprint, scores=outcome.scores,
                base_scores=base_outcome.scores, recipe=recipe, tokenizer=tokenizer,
                formats=formats if is_last else formats - {"merged", "gguf", "ollama"},
            )
    report = RunReport(run_dir=run_dir, base=base_outcome, stages=stage_outcomes, seconds=time.time() - started)
    publish_leaderboard(report, recipe_name=recipe.name, model_ref=recipe.model.base, db_path=runs_dir / LEADERBOARD_DB)
    return report


def base_fingerprint(loaded: LoadedRecipe, base: ResolvedModel) -> str:
    model = loaded.recipe.model
    return fingerprint(base.identity, model.dtype, model.revision)


def _run_or_reuse(
    loaded: LoadedRecipe,
    stage: PlannedStage,
    source: StageOutcome,
    stage_fp: str,
    *,
    run_dir: Path,
    datasets: dict[str, Any],
    tokenizer: Any,
    forced: bool,
    console: Console,
    earlier: dict[str, Lineage] | None = None,
) -> tuple[StageOutcome, Any]:
    name = stage.spec.name
    stage_dir = run_dir / name
    record = read_json(stage_dir / "stage.json") or {}
    same = record.get("fingerprint") == stage_fp
    if same and record.get("status") == "completed" and not forced:
        console.print(f"[green]✓[/] stage [bold]{name}[/] cached ({stage_fp})")
        outcome = StageOutcome(
            name, _saved_lineage(stage_dir, source.lineage), stage_fp, cached=True,
            seconds=record.get("seconds", 0.0), metrics=record.get("metrics", {}),
        )
        return outcome, None

    resume_from = last_checkpoint(stage_dir / "checkpoints") if same and not forced else None
    if not resume_from:
        _clear_stage_dir(stage_dir)
    console.rule(f"stage {name} ({stage.spec.type}) ← {stage.input}")
    if resume_from:
        console.print(f"resuming from {resume_from}")

    status = {
        "name": name, "type": stage.spec.type, "fingerprint": stage_fp, "input": stage.input,
        "input_fingerprint": source.fingerprint, "data": stage.spec.data, "versions": library_versions(),
        "spec": stage.spec.model_dump(mode="json"), "started": time.time(), "status": "running",
    }
    write_json(stage_dir / "stage.json", status)
    ctx = StageContext(
        recipe=loaded.recipe, stage_dir=stage_dir, input=source.lineage, tokenizer=tokenizer,
        datasets=datasets, console=console, resume_from=resume_from, base_dir=loaded.base_dir,
        input_name=stage.input, earlier=dict(earlier or {}),
        callbacks=[MetricsFile(stage_dir / "metrics.jsonl"), NonFiniteLossGuard()],
    )
    started = time.time()
    try:
        result = STAGES[stage.spec.type](ctx, stage.spec)
    except (TrainingError, UserError, KeyboardInterrupt) as exc:
        status.update(status="failed", error=str(exc) or type(exc).__name__, seconds=time.time() - started)
        write_json(stage_dir / "stage.json", status)
        raise
    seconds = time.time() - started
    status.update(
        status="completed", seconds=seconds, finished=time.time(), lineage=result.lineage.to_dict(),
        metrics=result.metrics,
    )
    write_json(stage_dir / "stage.json", status)
    console.print(f"[green]✓[/] stage [bold]{name}[/] trained in {seconds:.0f}s")
    outcome = StageOutcome(name, result.lineage, stage_fp, seconds=seconds, metrics=result.metrics)
    return outcome, result.model


def _saved_lineage(stage_dir: Path, source: Lineage) -> Lineage:
    """A completed stage's lineage, rebuilt from today's paths of its input and its own folder.

    Rebuilt rather than read from stage.json, so a moved run directory or model
    cache (the base path) does not leave a cached stage pointing at old files.
    """
    if (stage_dir / "adapter" / "adapter_config.json").exists():
        return source.extended(stage_dir / "adapter")
    return Lineage(base=str(stage_dir / "model"))  # full fine-tune or distilled student: a new lineage


def _clear_stage_dir(stage_dir: Path) -> None:
    # A changed stage starts clean; eval.json and export/ of the old fingerprint would lie.
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)


def _materialize(loaded: LoadedRecipe, lineage: Lineage) -> Any:
    model = loaded.recipe.model
    return materialize(lineage, dtype=model.dtype, trust_remote_code=model.trust_remote_code)
