"""What the terminal shows: the plan before a run, timings and the leaderboard after it, the cross-run board."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from posttrain.pipeline.plan import RunPlan
from posttrain.pipeline.runner import RunReport
from posttrain.recipe.schema import Recipe

_STATUS = {
    "cached": "[green]cached[/]",
    "resume": "[yellow]resume[/]",
    "run": "[cyan]will run[/]",
    "rerun": "[cyan]will rerun (changed)[/]",
    "forced": "[cyan]will rerun (--force)[/]",
}


def print_plan(plan: RunPlan, recipe: Recipe, *, console: Console) -> None:
    """One row per stage: type, input, data, fingerprint and whether a run would reuse it."""
    table = Table(title=f"plan: {recipe.name}  (run dir {plan.run_dir})")
    for column in ("stage", "type", "starts from", "data", "fingerprint", "status"):
        table.add_column(column)
    for stage in plan.stages:
        starts_from = ", ".join([stage.input, *(f"{k}: {v}" for k, v in stage.model_inputs.items())])
        table.add_row(
            stage.name, stage.spec.type, starts_from, stage.spec.data, stage.fingerprint, _STATUS[stage.status]
        )
    console.print(table)
    console.print(f"eval after each stage: {', '.join(recipe.eval.tasks)} (limit {recipe.eval.limit})")


def print_run_report(report: RunReport, *, console: Console) -> None:
    """Stage timings, then the leaderboard: base vs every stage, with deltas; then each stage's held-out objective."""
    from posttrain.leaderboard.render import distill_rich_table, objectives_rich_table, rich_table

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
    rows = report.leaderboard_rows()
    console.print(rich_table(rows, title="leaderboard (lm-eval; Δ vs base, and vs input stage)"))
    distilled = distill_rich_table(rows)
    if distilled is not None:
        console.print(distilled)
    objectives = objectives_rich_table(report.objectives())
    if objectives is not None:
        console.print(objectives)
    console.print(f"run directory: {report.run_dir}")


def print_board(db_path: Path, *, task: str | None, limit: int, console: Console) -> None:
    """The cross-run SQLite leaderboard as a table."""
    from posttrain.leaderboard.store import top

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
