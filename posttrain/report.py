"""What the terminal shows: the plan before a run, the leaderboard after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from posttrain.recipe.loader import LoadedRecipe


def print_plan(loaded: LoadedRecipe, *, runs_dir: Path, console: Console) -> None:
    """One row per stage: type, input, data, fingerprint and whether a run would reuse it."""
    from data_prep import dataset_fingerprint, texts_fingerprint, tokenizer_id
    from posttrain.evaluation.suite import task_documents
    from posttrain.fingerprint import stage_fingerprint
    from posttrain.models.loading import load_tokenizer
    from posttrain.models.resolve import resolve_model
    from posttrain.pipeline.plan import BASE, plan_stages, upstream_fingerprint
    from posttrain.pipeline.runner import base_fingerprint
    from posttrain.rundir import last_checkpoint, read_json

    recipe = loaded.recipe
    base = resolve_model(recipe.model.base, base_dir=loaded.base_dir, prefer_hub=recipe.model.prefer_hub)
    tokenizer = load_tokenizer(base.path, trust_remote_code=recipe.model.trust_remote_code)
    eval_fp = texts_fingerprint(task_documents())
    run_dir = (runs_dir / recipe.name).resolve()

    table = Table(title=f"plan: {recipe.name}  (run dir {run_dir})")
    for column in ("stage", "type", "starts from", "data", "fingerprint", "status"):
        table.add_column(column)
    fingerprints = {BASE: base_fingerprint(loaded, base)}
    for stage in plan_stages(recipe):
        data_fp = dataset_fingerprint(
            recipe.datasets[stage.spec.data], base_dir=loaded.base_dir, tokenizer_id=tokenizer_id(tokenizer),
            eval_fingerprint=eval_fp, seed=recipe.seed,
        )
        fp = stage_fingerprint(stage.spec, upstream_fingerprint(stage, fingerprints), data_fp, recipe.seed)
        fingerprints[stage.spec.name] = fp
        record = read_json(run_dir / stage.spec.name / "stage.json") or {}
        if record.get("fingerprint") == fp and record.get("status") == "completed":
            status = "[green]cached[/]"
        elif record.get("fingerprint") == fp and last_checkpoint(run_dir / stage.spec.name / "checkpoints"):
            status = "[yellow]resume[/]"
        else:
            status = "[cyan]will run[/]" if not record else "[cyan]will rerun (changed)[/]"
        table.add_row(stage.spec.name, stage.spec.type, stage.input, stage.spec.data, fp, status)
    console.print(table)
    console.print(f"eval after each stage: {', '.join(recipe.eval.tasks)} (limit {recipe.eval.limit})")


def print_run_report(report: Any, *, console: Console) -> None:
    """Stage timings, then the leaderboard: base vs every stage, with deltas."""
    from posttrain.evaluation.leaderboard import rich_table
    from posttrain.pipeline.leaderboard import DISTILL_COLUMNS, distill_summary, stage_rows

    timings = Table(title=f"run {report.run_dir.name}: {report.seconds:.0f}s")
    for column in ("stage", "status", "seconds", "train loss", "export"):
        timings.add_column(column)
    for stage in report.stages:
        loss = stage.metrics.get("train_loss")
        timings.add_row(
            stage.name,
            "cached" if stage.cached else "trained",
            f"{stage.seconds:.0f}",
            f"{loss:.3f}" if isinstance(loss, (int, float)) else "-",
            ", ".join(stage.exports) or "-",
        )
    console.print(timings)
    console.print(rich_table(stage_rows(report), title="leaderboard (lm-eval; Δ vs base, and vs input stage)"))
    distilled = distill_summary(report)
    if distilled:
        table = Table(title="distillation (retention = student score / teacher score)")
        for column in DISTILL_COLUMNS:
            table.add_column(column)
        for row in distilled:
            table.add_row(*row)
        console.print(table)
    console.print(f"run directory: {report.run_dir}")


def print_board(db_path: Path, *, task: str | None, limit: int, console: Console) -> None:
    """The cross-run SQLite leaderboard as a table."""
    from posttrain.evaluation.leaderboard import top

    rows = top(db_path, task=task, limit=limit)
    if not rows:
        console.print(f"no results in {db_path} yet (or none with task {task!r})" if task else f"no results in {db_path} yet")
        return
    tasks = list(dict.fromkeys(t for row in rows for t in row.scores))
    table = Table(title=f"leaderboard: {db_path}" + (f" (by {task})" if task else " (by mean score)"))
    for column in ("#", "run", "stage", *tasks, "mean", "when"):
        table.add_column(column)
    for rank, row in enumerate(rows, 1):
        scores = [f"{row.scores[t]:.3f}" if t in row.scores else "-" for t in tasks]
        table.add_row(str(rank), row.run_name, row.stage, *scores, f"{row.mean:.3f}", row.timestamp)
    console.print(table)
