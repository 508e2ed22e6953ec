"""What the terminal shows: the plan before a run, timings and the leaderboard after it, the cross-run board."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # type hints only: `posttrain leaderboard` and a failing `posttrain eval` stay quick to start
    from posttrain.pipeline.evaluate_any import EvalOutcome
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
    console.print(f"eval after each stage: {', '.join(recipe.eval.task_labels)} (limit {recipe.eval.limit})")


def print_run_report(report: RunReport, *, console: Console) -> None:
    """Stage timings, then the leaderboard: base vs every stage, with deltas; then each stage's held-out objective."""
    from posttrain.leaderboard.render import (
        facts_rich_tables,
        has_evidence,
        objectives_rich_table,
        rich_table,
        significance_verdicts,
    )

    timings = Table(title=f"run {report.run_dir.name}: {report.seconds:.0f}s")
    for column in ("stage", "status", "seconds", "train loss", "export"):
        timings.add_column(column)
    for stage in report.stages:
        loss = stage.metrics.get("train_loss")
        timings.add_row(
            stage.name,
            "cached" if stage.cached else "resumed" if stage.resumed else "trained",
            f"{stage.seconds:.0f}",
            f"{loss:.3f}" if isinstance(loss, (int, float)) else "-",
            ", ".join(stage.exports) or "-",
        )
    console.print(timings)
    rows = report.leaderboard_rows()
    console.print(rich_table(rows, title="leaderboard (lm-eval; Δ vs base, and vs input stage)"))
    if has_evidence(rows):
        for line in significance_verdicts(rows):
            console.print(f"  {line}", markup=False, highlight=False)
    for facts in facts_rich_tables(rows):
        console.print(facts)
    objectives = objectives_rich_table(report.objectives())
    if objectives is not None:
        console.print(objectives)
    print_artifacts(report.artifacts, console=console)
    console.print(f"run directory: {report.run_dir}")


def print_board(db_path: Path, *, task: str | None, limit: int, console: Console, fmt: str = "table") -> None:
    """The cross-run SQLite leaderboard as a table, markdown or JSON (with stderr, intervals, delta tests)."""
    import json

    from posttrain.leaderboard.render import RANKING_NOTE, board_cell, board_json, board_markdown
    from posttrain.leaderboard.store import top

    rows = top(db_path, task=task, limit=limit)
    if fmt == "json":
        console.print(json.dumps(board_json(rows), indent=2), markup=False, highlight=False, soft_wrap=True)
        return
    if not rows:
        console.print(f"no results in {db_path} yet (or none with task {task!r})" if task else f"no results in {db_path} yet")
        return
    title = f"leaderboard: {db_path}" + (f" (by {task})" if task else " (by mean chance-normalized score)")
    if fmt == "md":
        console.print(board_markdown(rows, title), markup=False, highlight=False, soft_wrap=True)
        return
    tasks = list(dict.fromkeys(t for row in rows for t in row.scores))
    table = Table(title=title, caption=None if task else RANKING_NOTE)
    for column in ("#", "run", "stage", *tasks, "mean norm.", "when"):
        table.add_column(column)
    for rank, row in enumerate(rows, 1):
        scores = [board_cell(row, t) for t in tasks]
        table.add_row(str(rank), row.run_name, row.stage, *scores, f"{row.mean:.3f}", row.timestamp)
    console.print(table)


def print_eval(outcome: EvalOutcome, *, console: Console) -> None:
    """One evaluated model: per task the headline metric, score ± stderr, 95% interval, n, normalized score."""
    table = Table(title=f"eval {outcome.target.label}  ({outcome.folder})")
    for column in ("task", "metric", "score", "±stderr", "95% interval", "n", "chance", "normalized"):
        table.add_column(column)
    notes = []
    for task, score in outcome.scores.items():
        s = outcome.evidence.stats.get(task) if outcome.evidence else None
        if s is None:
            table.add_row(task, "", f"{score:.3f}", "", "", "", "", "")
            continue
        interval = f"[{s.ci95[0]:.3f}, {s.ci95[1]:.3f}]" if s.ci95 else "-"
        stderr = f"{s.stderr:.3f}" if s.stderr is not None else "-"
        table.add_row(task, s.metric, f"{score:.3f}", stderr, interval, str(s.n), f"{s.chance:.3f}",
                      f"{s.normalized:.3f}")
        if s.note:
            notes.append(f"{task}: {s.note}")
    console.print(table)
    for note in notes:
        console.print(f"[yellow]note[/] {note}")


def print_artifacts(records: list[dict], *, console: Console) -> None:
    """Exported artifacts scored in their engines: score with interval, the paired verdict, size, speed, parity."""
    from posttrain.pipeline.artifact_eval import scores_table

    if not records:
        return
    table = Table(title="exported artifacts scored in their engines (vs the merged model, same documents)")
    for column in ("artifact", "task", "score [95%]", "verdict", "size", "generation", "parity"):
        table.add_column(column)
    for row in scores_table(records):
        table.add_row(*row)
    console.print(table)
