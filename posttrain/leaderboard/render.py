"""The leaderboard as people read it: a rich table for the terminal, markdown for files."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from posttrain.leaderboard.table import Cell, StageScores, compute_cells, task_columns
from posttrain.stagekit.objective import HeldOutObjective


def _fmt_delta(d: float | None, *, rich: bool) -> str:
    if d is None:
        return ""
    text = f"{d:+.3f}"
    if not rich or abs(d) < 5e-4:
        return text
    return f"[green]{text}[/green]" if d > 0 else f"[red]{text}[/red]"


def _fmt_cell(c: Cell, *, rich: bool) -> str:
    if c.score is None:
        return "–"
    parts = [f"{c.score:.3f}"]
    if c.vs_base is not None:
        parts.append(f"{_fmt_delta(c.vs_base, rich=rich)} vs base")
    if c.vs_input is not None:
        parts.append(f"{_fmt_delta(c.vs_input, rich=rich)} vs input")
    if c.retention is not None:
        parts.append(f"retention {c.retention:.2f}")
    sep = "\n" if rich else "<br>"
    return sep.join(parts)


def rich_table(rows: Sequence[StageScores], title: str = "Leaderboard") -> Table:
    """One row per stage, one column per task: score, Δ vs base, Δ vs the input stage (, retention)."""
    tasks = task_columns(rows)
    table = Table(title=title, show_lines=True)
    table.add_column("stage", style="bold")
    for task in tasks:
        table.add_column(task, justify="right")
    for row, cells in zip(rows, compute_cells(rows), strict=True):
        table.add_row(row.label, *(_fmt_cell(cells[t], rich=True) for t in tasks))
    return table


def markdown_table(rows: Sequence[StageScores]) -> str:
    """The same table as GitHub-flavoured markdown, for a report file."""
    tasks = task_columns(rows)
    lines = ["| stage | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for row, cells in zip(rows, compute_cells(rows), strict=True):
        lines.append(f"| {row.label} | " + " | ".join(_fmt_cell(cells[t], rich=False) for t in tasks) + " |")
    return "\n".join(lines) + "\n"


DISTILL_COLUMNS = ("stage", "teacher", "params teacher → student", "tokens/s teacher → student", "mean retention")


def distill_rows(rows: Sequence[StageScores]) -> list[tuple[str, ...]]:
    """One row per distilled stage: what the student costs and keeps (retention = student / teacher score)."""
    out = []
    for row, cells in zip(rows, compute_cells(rows), strict=True):
        facts = row.distill
        if facts is None:
            continue
        kept = [c.retention for c in cells.values() if c.retention is not None]
        out.append((
            row.label,
            facts.teacher,
            f"{facts.teacher_params / 1e6:.1f}M → {facts.student_params / 1e6:.1f}M (×{facts.param_ratio:.2f})",
            f"{facts.teacher_tokens_per_s:.0f} → {facts.student_tokens_per_s:.0f} (×{facts.speedup:.2f})",
            f"{sum(kept) / len(kept):.2f}" if kept else "–",
        ))
    return out


def distill_rich_table(rows: Sequence[StageScores]) -> Table | None:
    found = distill_rows(rows)
    if not found:
        return None
    table = Table(title="distillation (retention = student score / teacher score)")
    for column in DISTILL_COLUMNS:
        table.add_column(column)
    for row in found:
        table.add_row(*row)
    return table


def distill_markdown(rows: Sequence[StageScores]) -> str:
    found = distill_rows(rows)
    if not found:
        return ""
    lines = ["## distillation", "", "| " + " | ".join(DISTILL_COLUMNS) + " |", "|---" * len(DISTILL_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in found]
    return "\n".join(lines) + "\n"


def run_markdown(title: str, rows: Sequence[StageScores]) -> str:
    """The run's `leaderboard.md`: the score table, then distillation facts when a stage distilled."""
    return f"# {title}\n\n{markdown_table(rows)}\n{distill_markdown(rows)}"


OBJECTIVE_COLUMNS = ("stage", "held-out", "metric", "before", "after", "Δ ± 95%", "verdict")


def objective_verdict(objective: HeldOutObjective, metric: str) -> str:
    """`better` / `worse` when the change is outside its 95% band (by the metric's direction), else `within noise`."""
    better = objective.improved(metric)
    if better is None:
        return "unchanged"
    direction = "better" if better else "worse"
    significant = objective.significant(metric)
    if significant is None:
        return f"{direction} (no error estimate)"
    return direction if significant else "within noise"


def objective_rows(objectives: Sequence[tuple[str, HeldOutObjective]]) -> list[tuple[str, ...]]:
    """One row per (stage, metric): before and after the stage on its held-out rows, the change and its verdict.

    The ± is 1.96 paired standard errors over the held-out rows; losses and
    divergences improve downwards, everything else upwards.
    """
    out = []
    for stage, objective in objectives:
        measured = f"{objective.rows} rows"
        if objective.before_is != "input":
            measured += f"; before = {objective.before_is}"
        for metric, before in objective.before.items():
            after = objective.after.get(metric)
            if after is None:
                continue
            stderr = objective.change_stderr.get(metric, math.nan)
            band = "" if math.isnan(stderr) else f" ± {1.96 * stderr:.2g}"
            verdict = objective_verdict(objective, metric)
            out.append((stage, measured, metric, f"{before:.4g}", f"{after:.4g}", f"{after - before:+.4g}{band}", verdict))
            stage, measured = "", ""  # once per stage, the table reads as a group
    return out


def objectives_rich_table(objectives: Sequence[tuple[str, HeldOutObjective]]) -> Table | None:
    """What each stage optimized, measured on its data's held-out split before and after it."""
    found = objective_rows(objectives)
    if not found:
        return None
    table = Table(title="stage objectives on held-out data (before → after the stage; ± = 95% paired interval)")
    for column in OBJECTIVE_COLUMNS:
        table.add_column(column, justify="right" if column in ("before", "after", "Δ ± 95%") else "left")
    colours = {"better": "green", "worse": "red"}
    for row in found:
        colour = colours.get(row[-1])
        table.add_row(*row[:-1], f"[{colour}]{row[-1]}[/{colour}]" if colour else row[-1])
    return table


def objectives_markdown(objectives: Sequence[tuple[str, HeldOutObjective]]) -> str:
    found = objective_rows(objectives)
    if not found:
        return ""
    lines = [
        "## stage objectives on held-out data", "",
        "What each stage optimized, on its dataset's held-out split, before and after the stage "
        "(± = 1.96 paired standard errors over the held-out rows).", "",
        "| " + " | ".join(OBJECTIVE_COLUMNS) + " |", "|---|---|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in found]
    notes = [f"- {stage}: {note}" for stage, objective in objectives for note in objective.notes]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
