"""Run a recipe: open it, plan it, prepare data, then for each stage reuse or train, evaluate, export.

Reads top to bottom as the user sees it happen. Which stage is reused,
resumed or trained is decided by the plan (pipeline/plan.py), the same one
`posttrain plan` prints.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from posttrain import preemption
from posttrain.errors import TrainingError, UserError
from posttrain.evaluation.record import load_evidence
from posttrain.export.artifacts import export_stage
from posttrain.export.run_export import saved_scores
from posttrain.failpoints import failpoint
from posttrain.leaderboard.render import objectives_markdown, run_markdown
from posttrain.leaderboard.store import LEADERBOARD_DB, record_run
from posttrain.leaderboard.table import StageScores
from posttrain.locking import sole_writer
from posttrain.models.lineage import Lineage, materialize
from posttrain.pipeline.artifact_eval import artifact_rows, exported_artifacts, score_artifacts
from posttrain.pipeline.datasets import prepare_datasets, used_datasets
from posttrain.pipeline.evaluate import evaluate_cached
from posttrain.pipeline.objective import objective_cached
from posttrain.pipeline.plan import BASE, PlannedStage, RunPlan, plan_run
from posttrain.pipeline.session import RunSession, open_session
from posttrain.recipe.loader import LoadedRecipe, dump_yaml
from posttrain.report import write_report
from posttrain.run_layout import RunDir
from posttrain.rundir import library_versions, run_id, utc_now, with_history
from posttrain.stagekit import HeldOutObjective, StageContext
from posttrain.stagekit.facts import facts_from_json, facts_to_json
from posttrain.stages import fact_types
from posttrain.tracking import Tracker, tracking
from posttrain.training.callbacks import (
    CheckpointFailpoint,
    MetricsFile,
    NonFiniteLossGuard,
    PreemptionCheckpoint,
    ResumedEpochShuffle,
    keep_metrics_through,
)
from posttrain.training.preflight import preflight_for
from posttrain.training.progress import TrainingProgress


@dataclass
class StageOutcome:
    name: str
    lineage: Lineage
    fingerprint: str
    input: str = ""
    cached: bool = False
    resumed: bool = False
    """Trained on from a checkpoint of an earlier, interrupted run."""
    seconds: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    """Typed facts by kind (`StageResult.facts`), for the leaderboard."""
    objective: HeldOutObjective | None = None
    """What the stage optimized, before and after it, on its data's held-out split."""
    chain: list[str] = field(default_factory=list)
    """Stages whose adapters make up this model, from the start of its lineage."""
    exports: dict[str, str] = field(default_factory=dict)

    def leaderboard_row(self, run_dir: Path) -> StageScores:
        return StageScores(
            self.name, self.scores, input=self.input or None, facts=self.facts,
            evidence=load_evidence(RunDir(run_dir).stage_dir(self.name)),
        )


@dataclass
class RunReport:
    run_dir: Path
    base: StageOutcome
    stages: list[StageOutcome]
    seconds: float
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    """artifact.json of each exported artifact this run scored in its engine (`export.evaluate`)."""

    def leaderboard_rows(self) -> list[StageScores]:
        """Base first, then every evaluated stage, then the exported artifacts scored in their engines."""
        base = StageScores(BASE, self.base.scores, evidence=load_evidence(RunDir(self.run_dir).stage_dir(BASE)))
        return ([base] + [s.leaderboard_row(self.run_dir) for s in self.stages if s.scores]
                + [row for row, _ in self.artifact_rows()])

    def artifact_rows(self) -> list[tuple[StageScores, str]]:
        """(`<stage>@<artifact>` row, its eval fingerprint) for each artifact scored in its engine."""
        return artifact_rows(RunDir(self.run_dir), [s.name for s in self.stages])

    def objectives(self) -> list[tuple[str, HeldOutObjective]]:
        """(stage, held-out objective) for every stage that measured one, in run order."""
        return [(s.name, s.objective) for s in self.stages if s.objective is not None]


def run_recipe(
    loaded: LoadedRecipe, *, runs_dir: Path, force: set[str] | None = None, console: Console | None = None
) -> RunReport:
    """Carry out the recipe's plan; one process at a time per run directory."""
    console = console or Console()
    started = time.time()
    session = open_session(loaded, runs_dir=runs_dir, console=console)
    # Held by the process writing the run directory; the kernel releases it if that process dies.
    with sole_writer(RunDir(session.run_dir).lock_file, f"run directory {session.run_dir}"), tracking(
        session.recipe.tracking, run_dir=session.run_dir, runs_dir=runs_dir, name=session.recipe.name
    ) as tracker:
        return _carry_out(session, runs_dir=runs_dir, force=force or set(), console=console, started=started,
                          tracker=tracker)


def _carry_out(
    session: RunSession, *, runs_dir: Path, force: set[str], console: Console, started: float, tracker: Tracker
) -> RunReport:
    recipe = session.recipe
    run = RunDir(session.run_dir)
    plan = plan_run(session, force=force)
    # base_dir: the resolved recipe, read from the run directory, still finds the files the recipe named.
    resolved = recipe.model_dump(mode="json", exclude={"name", "base_dir"})
    resolved = {"name": recipe.name, "base_dir": str(session.loaded.base_dir.resolve()), **resolved}
    run.write_recipe(dump_yaml(resolved))
    datasets = prepare_datasets(session, used_datasets(session), console=console)
    _check_data_fingerprints(plan, datasets)

    base_outcome = StageOutcome(BASE, session.base_lineage, fingerprint=plan.base_fingerprint)
    if recipe.eval.on_base:
        base_outcome.scores = evaluate_cached(
            recipe, run.stage_dir(BASE), base_outcome.fingerprint,
            lambda: _materialize(session, base_outcome.lineage), tokenizer=session.tokenizer, console=console,
            label=BASE,
        )
        tracker.scores(BASE, base_outcome.scores, base=True)

    this_run = run_id(started)
    outcomes: dict[str, StageOutcome] = {BASE: base_outcome}
    for stage in plan.stages:
        source = outcomes[stage.input]
        ctx = _context(session, stage, source, outcomes, datasets=datasets, console=console)
        if stage.status == "cached":
            outcome, model = _reuse(stage, run, session.base_lineage, console, this_run=this_run), None
        else:
            with tracker.stage(stage.name):
                outcome, model = _train(session, ctx, stage, source, console=console, this_run=this_run)
        outcome.objective = objective_cached(
            stage.stage_type, ctx, stage.spec, stage.fingerprint,
            (lambda m=model, o=outcome: m if m is not None else _materialize(session, o.lineage)), console=console,
        )
        del model
        gc.collect()
        if stage.spec.evaluate:
            # Scored as exported (adapters merged in fp32, then cast to the eval dtype), not as the trained
            # model in memory: the same numbers whether the stage trained now, resumed or was reused, and
            # exactly plain lm-eval's on the merged export.
            outcome.scores = evaluate_cached(
                recipe, run.stage_dir(stage.name), stage.fingerprint,
                (lambda o=outcome: _materialize(session, o.lineage)),
                tokenizer=session.tokenizer, console=console, label=stage.name,
            )
            tracker.scores(stage.name, outcome.scores)
        outcome.input = stage.input
        outcome.chain = run.chain(stage.name)
        outcomes[stage.name] = outcome

    stage_outcomes = [outcomes[p.name] for p in plan.stages]
    with console.status("Exporting adapters..."):
        for outcome in stage_outcomes:
            # The last stage gets every format; earlier ones what their adapter or whole model can hold.
            outcome.exports = export_stage(
                stage_dir=run.stage_dir(outcome.name), stage_name=outcome.name, chain=outcome.chain,
                lineage=outcome.lineage, stage_fingerprint=outcome.fingerprint, scores=outcome.scores,
                base_scores=base_outcome.scores, recipe_name=recipe.name, model=recipe.model,
                tokenizer=session.tokenizer, formats=recipe.export.formats, final=outcome is stage_outcomes[-1],
                stderrs=saved_scores(run.stage_dir(outcome.name))[1], recipe_path=str(run.recipe_file),
                settings=recipe.export.format_settings(),
            )
            failpoint("export")
    scored = _score_exports(run, stage_outcomes, tokenizer=session.tokenizer, console=console) \
        if recipe.export.evaluate else []
    report = RunReport(session.run_dir, base_outcome, stage_outcomes, seconds=time.time() - started,
                       artifacts=scored)
    _publish(report, recipe_name=recipe.name, model_ref=recipe.model.base, db_path=runs_dir / LEADERBOARD_DB)
    write_report(report.run_dir)
    return report


def _score_exports(run: RunDir, outcomes: list[StageOutcome], *, tokenizer: Any,
                   console: Console) -> list[dict[str, Any]]:
    """`export.evaluate`: the GGUF quants and vLLM adapter exported for the last stage (what the run ships), each
    scored in its engine; other stages' artifacts are scored on request (`posttrain eval RUN/STAGE --artifact`)."""
    records: list[dict[str, Any]] = []
    for outcome in outcomes[-1:]:
        specs = exported_artifacts(run, outcome.name)
        if specs and outcome.scores:  # compared with the stage's own evaluation: none, nothing to compare
            records += score_artifacts(run, outcome.name, specs, console=console, tokenizer=tokenizer)
    return records


def _check_data_fingerprints(plan: RunPlan, datasets: dict[str, Any]) -> None:
    for stage in plan.stages:
        prepared = datasets[stage.spec.data].fingerprint
        if prepared != stage.data_fingerprint:  # the plan and curation must key data the same way
            raise RuntimeError(f"dataset {stage.spec.data!r}: planned {stage.data_fingerprint}, prepared {prepared}")


def _reuse(stage: PlannedStage, run: RunDir, base: Lineage, console: Console, *, this_run: str) -> StageOutcome:
    console.print(f"[green]✓[/] stage [bold]{stage.name}[/] cached ({stage.fingerprint})")
    record = run.read_stage(stage.name) or {}
    # The report tells what this run did with each stage (and draws it as its type declares today);
    # stage.json is where it reads that.
    run.write_stage(stage.name, {**record, "report": stage.stage_type.report_record(),
                                 "history": with_history(record, {"run": this_run, "outcome": "cached"})})
    # Rebuilt from today's paths rather than read from stage.json: a moved run directory or model cache
    # (the base path) does not leave a cached stage pointing at old files.
    return StageOutcome(
        stage.name, run.lineage(stage.name, base), stage.fingerprint, cached=True,
        seconds=record.get("seconds", 0.0), metrics=record.get("metrics", {}),
        facts=facts_from_json(record.get("facts"), fact_types()),
    )


def _context(
    session: RunSession,
    stage: PlannedStage,
    source: StageOutcome,
    outcomes: dict[str, StageOutcome],
    *,
    datasets: dict[str, Any],
    console: Console,
) -> StageContext:
    """What the stage's code sees: its input, the models before it, the prepared data, its folder."""
    run = RunDir(session.run_dir)
    stage_dir = run.stage_dir(stage.name)
    recipe = session.recipe
    return StageContext(
        model_spec=recipe.model, eval_spec=recipe.eval, seed=recipe.seed, stage_dir=stage_dir,
        input=source.lineage, tokenizer=session.tokenizer, datasets=datasets, console=console,
        resume_from=stage.resume_from, base_dir=session.loaded.base_dir, input_name=stage.input,
        earlier={name: o.lineage for name, o in outcomes.items()},
        callbacks=[
            MetricsFile(run.metrics_file(stage.name)), NonFiniteLossGuard(), CheckpointFailpoint(),
            PreemptionCheckpoint(), ResumedEpochShuffle(), preflight_for(stage.name, stage.spec, stage.stage_type.data_kinds),
            TrainingProgress(console, stage.name),
        ],
    )


def _train(
    session: RunSession, ctx: StageContext, stage: PlannedStage, source: StageOutcome, *, console: Console,
    this_run: str,
) -> tuple[StageOutcome, Any]:
    stage_dir = ctx.stage_dir
    run = RunDir(session.run_dir)
    earlier = run.read_stage(stage.name) or {}  # its history outlives the folder a changed stage clears
    if stage.status != "resume":
        _clear_stage_dir(stage_dir)
    console.rule(f"stage {stage.name} ({stage.spec.type}) ← {stage.input}")
    for damaged, why in stage.damaged_checkpoints:
        console.print(f"[yellow]skipping damaged checkpoint[/] {damaged}: {why}")
        shutil.rmtree(damaged, ignore_errors=True)
    if stage.resume_from:
        console.print(f"resuming from {stage.resume_from}")
        keep_metrics_through(run.metrics_file(stage.name), int(stage.resume_from.name.rsplit("-", 1)[-1]))

    # This run's history entry: written as running (a kill leaves it so), updated in place when the stage ends.
    entry: dict[str, Any] = {"run": this_run, "outcome": "running", "planned": stage.status}
    if stage.resume_from:
        entry["resumed_from"] = stage.resume_from.name
    status = {
        "name": stage.name, "type": stage.spec.type, "fingerprint": stage.fingerprint, "input": stage.input,
        "input_fingerprint": source.fingerprint, "data": stage.spec.data, "versions": library_versions(),
        "spec": stage.spec.model_dump(mode="json"), "report": stage.stage_type.report_record(),
        "started": time.time(), "status": "running",
        "history": with_history(earlier, entry),
    }
    run.write_stage(stage.name, status)
    started = time.time()
    try:
        result = _run_stage(session, stage, ctx, console)
    except (TrainingError, UserError, KeyboardInterrupt) as exc:
        entry.update(outcome="failed", seconds=time.time() - started)
        status.update(status="failed", error=str(exc) or type(exc).__name__, seconds=time.time() - started)
        run.write_stage(stage.name, status)
        raise
    seconds = time.time() - started
    entry.update(outcome="resumed" if stage.resume_from else "trained", seconds=seconds)
    status.update(
        status="completed", seconds=seconds, finished=time.time(), lineage=run.lineage_record(result.lineage, session.base_lineage),
        metrics=result.metrics, facts=facts_to_json(result.facts),
        # The report reads files only: the row its scores are compared with (a student's teacher), by name.
        compared_with=next((f.reference_stage for f in result.facts.values() if f.reference_stage), None),
    )
    run.write_stage(stage.name, status)
    console.print(f"[green]✓[/] stage [bold]{stage.name}[/] trained in {seconds:.0f}s")
    outcome = StageOutcome(
        stage.name, result.lineage, stage.fingerprint, seconds=seconds, metrics=result.metrics, facts=result.facts,
        resumed=stage.resume_from is not None,
    )
    return outcome, result.model


def _run_stage(session: RunSession, stage: PlannedStage, ctx: StageContext, console: Console) -> Any:
    """In this process, or on the recipe's processes and machines under `accelerate launch`."""
    from posttrain.launch.launcher import is_launched, run_launched

    preemption.raise_if_requested()  # noted while the last stage finished: stop before this one starts
    if not is_launched(session.recipe, session.loaded.base_dir):
        return stage.stage_type.run(ctx, stage.spec)
    return run_launched(ctx, recipe=session.recipe, stage=stage.name, tokenizer=session.base.path, console=console)


def _clear_stage_dir(stage_dir: Path) -> None:
    # A changed stage starts clean; eval.json and export/ of the old fingerprint would lie.
    shutil.rmtree(stage_dir, ignore_errors=True)
    stage_dir.mkdir(parents=True)


def _materialize(session: RunSession, lineage: Lineage) -> Any:
    model = session.recipe.model
    return materialize(lineage, dtype=model.dtype, trust_remote_code=model.trust_remote_code, purpose="inference")


def _publish(report: RunReport, *, recipe_name: str, model_ref: str, db_path: Path) -> None:
    """`leaderboard.md` in the run directory, and every scored model on the shared SQLite board."""
    rows = report.leaderboard_rows()
    markdown = run_markdown(recipe_name, rows)
    objectives = objectives_markdown(report.objectives())
    RunDir(report.run_dir).leaderboard_file.write_text(markdown + (f"\n{objectives}" if objectives else ""))
    fingerprints = {report.base.name: report.base.fingerprint, **{s.name: s.fingerprint for s in report.stages},
                    **{row.label: key for row, key in report.artifact_rows()}}
    record_run(db_path, recipe_name, model_ref, rows, fingerprints, utc_now())
