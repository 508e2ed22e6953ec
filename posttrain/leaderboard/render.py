"""The leaderboard as people read it: a rich table for the terminal, markdown for files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from posttrain.evaluation.stats import DeltaTest, GainKept
from posttrain.leaderboard.store import BoardRow
from posttrain.leaderboard.table import Cell, StageScores, compute_cells, task_columns
from posttrain.stagekit.facts import StageFacts
from posttrain.stagekit.objective import HeldOutObjective

SIGNIFICANT = "*"
UNTESTED = "†"
LEGEND = (
    f"score ± standard error; Δ{SIGNIFICANT} = significant at 95% (paired test on the same documents: McNemar for "
    f"0/1 metrics, paired bootstrap otherwise), Δ without a mark = within noise, Δ{UNTESTED} = no paired test "
    "(no per-document results)"
)


NOT_COMPARED = "other protocol"


def _mark(test: DeltaTest | None) -> str:
    if test is None:
        return ""
    if test.p_value is None:
        return UNTESTED
    return SIGNIFICANT if test.significant else ""


def _fmt_delta(d: float | None, test: DeltaTest | None, *, rich: bool) -> str:
    if d is None:
        return ""
    text = f"{d:+.3f}{_mark(test)}"
    if not rich or abs(d) < 5e-4:
        return text
    if test is not None and test.p_value is not None and not test.significant:
        return f"[dim]{text}[/dim]"  # within noise: shown, but not as a gain or a loss
    return f"[green]{text}[/green]" if d > 0 else f"[red]{text}[/red]"


def _fmt_cell(c: Cell, *, rich: bool) -> str:
    if c.score is None:
        return "–"
    parts = [f"{c.score:.3f}" + (f" ±{c.stats.stderr:.3f}" if c.stats and c.stats.stderr is not None else "")]
    if c.vs_base is not None:
        parts.append(f"{_fmt_delta(c.vs_base, c.test_base, rich=rich)} vs base")
    if c.vs_input is not None:
        parts.append(f"{_fmt_delta(c.vs_input, c.test_input, rich=rich)} vs input")
    if c.retention is not None:
        parts.append(f"retention {c.retention:.2f}")
    if c.gain_kept is not None:
        parts.append(_fmt_gain_kept(c.gain_kept))
    parts += [f"not compared with {against} ({NOT_COMPARED})" for against in c.not_compared]
    sep = "\n" if rich else "<br>"
    return sep.join(parts)


def _fmt_gain_kept(kept: GainKept) -> str:
    if kept.low is None or kept.high is None:
        return f"keeps {kept.share:.0%} of the gain (teacher's gain within noise)"
    return f"keeps {kept.share:.0%} of the gain [{kept.low:.0%}, {kept.high:.0%}]"


def has_evidence(rows: Sequence[StageScores]) -> bool:
    return any(row.evidence is not None for row in rows)


def rich_table(rows: Sequence[StageScores], title: str = "Leaderboard") -> Table:
    """One row per stage, one column per task: score, Δ vs base, Δ vs the input stage (, retention)."""
    tasks = task_columns(rows)
    table = Table(title=title, show_lines=True, caption=LEGEND if has_evidence(rows) else None)
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
    if has_evidence(rows):
        lines += ["", LEGEND]
    return "\n".join(lines) + "\n"


def fact_tables(rows: Sequence[StageScores]) -> list[tuple[type[StageFacts], list[tuple[str, ...]]]]:
    """Per kind of typed facts (first seen first): its type and one row per stage that has such facts.

    Each row is the stage and the fact's own cells; retention, when the fact names a model to compare
    with, is the stage's mean over tasks of score / that model's score.
    """
    tables: dict[str, tuple[type[StageFacts], list[tuple[str, ...]]]] = {}
    for row, cells in zip(rows, compute_cells(rows), strict=True):
        kept = [c.retention for c in cells.values() if c.retention is not None]
        retention = sum(kept) / len(kept) if kept else None
        for kind, fact in row.facts.items():
            _, found = tables.setdefault(kind, (type(fact), []))
            found.append((row.label, *fact.cells(retention)))
    return list(tables.values())


def facts_rich_tables(rows: Sequence[StageScores]) -> list[Table]:
    """One rich table per kind of typed facts (distillation: params, speed, retention)."""
    out = []
    for kind, found in fact_tables(rows):
        table = Table(title=f"{kind.title} ({kind.legend})" if kind.legend else kind.title)
        for column in ("stage", *kind.columns):
            table.add_column(column)
        for row in found:
            table.add_row(*row)
        out.append(table)
    return out


def facts_markdown(rows: Sequence[StageScores]) -> str:
    """The same tables as markdown sections ("" when no stage has typed facts)."""
    parts = []
    for kind, found in fact_tables(rows):
        columns = ("stage", *kind.columns)
        lines = [f"## {kind.title}", "", *([kind.legend, ""] if kind.legend else []),
                 "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in found]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _tested(test: DeltaTest | None) -> bool:
    return test is not None and test.p_value is not None


def _change(task: str, test: DeltaTest) -> str:
    return f"{task} {test.delta:+.3f} ({test.test}, p={test.p_value:.3g})"


def significance_verdicts(rows: Sequence[StageScores]) -> list[str]:
    """One plain sentence per stage: which benchmark deltas are more than noise at 95%, or that none is.

    A bare "+0.06" invites a conclusion the documents cannot support; this says
    what the paired tests allow one to say.
    """
    lines = []
    for row, cells in zip(rows[1:], compute_cells(rows)[1:], strict=True):
        lines += [f"{row.label}: {task} not compared with {against}: {why}"
                  for task, cell in cells.items() for against, why in cell.not_compared.items()]
        tested = {t: c for t, c in cells.items() if _tested(c.test_base) or _tested(c.test_input)}
        if not tested and any(c.not_compared for c in cells.values()):
            continue
        if not tested:
            lines.append(f"{row.label}: no paired test possible (no per-document results)")
            continue
        found = [
            f"{_change(task, test)} vs {against}"
            for task, cell in tested.items()
            for against, test in (("base", cell.test_base), ("input", cell.test_input))
            if test is not None and test.significant
        ]
        if found:
            quiet = [t for t, c in tested.items() if not any(x is not None and x.significant
                                                             for x in (c.test_base, c.test_input))]
            rest = f"; within noise on {', '.join(quiet)}" if quiet else ""
            lines.append(f"{row.label}: significant at 95%: {'; '.join(found)}{rest}")
        else:
            n = max(t.n_paired for c in tested.values() for t in (c.test_base, c.test_input) if t and _tested(t))
            lines.append(
                f"{row.label}: no benchmark change is significant at 95% (vs base or vs its input, {n} documents "
                "per task): its deltas are within noise"
            )
    return lines


def run_markdown(title: str, rows: Sequence[StageScores]) -> str:
    """The run's `leaderboard.md`: the score table, what is significant in plain words, then the stages' facts."""
    verdicts = significance_verdicts(rows) if has_evidence(rows) else []
    said = ("\n".join(f"- {line}" for line in verdicts) + "\n\n") if verdicts else ""
    return f"# {title}\n\n{markdown_table(rows)}\n{said}{facts_markdown(rows)}"


RANKING_NOTE = (
    "ranked by the mean chance-normalized score: (score - chance) / (1 - chance), clipped at 0, chance = "
    "1/choices for multiple choice and 0 for generation (Open LLM Leaderboard v2 style)"
)


def board_json(rows: Sequence[BoardRow]) -> dict[str, Any]:
    """The cross-run board as data: per entry and task the score, stderr, 95% interval, n, chance and
    normalized score; per delta the paired test used and its p-value."""
    entries = []
    for rank, row in enumerate(rows, 1):
        tasks = {}
        for task, score in row.scores.items():
            s = row.stats.get(task, {})
            ci = [s["ci_low"], s["ci_high"]] if s.get("ci_low") is not None else None
            tasks[task] = {
                "score": score, "metric": s.get("metric"), "stderr": s.get("stderr"), "ci95": ci, "n": s.get("n"),
                "chance": s.get("chance"), "normalized": row.normalized(task),
                "protocol": row.protocol(task), "not_compared": row.not_compared.get(task),
                "deltas": [
                    {"vs": d.versus, "other": d.other, "delta": d.delta, "test": d.test, "p_value": d.p_value,
                     "n_paired": d.n_paired, "significant": d.significant, "note": d.note}
                    for d in row.deltas.get(task, [])
                ],
            }
        entries.append({
            "rank": rank, "run": row.run_name, "stage": row.stage, "model_ref": row.model_ref,
            "fingerprint": row.fingerprint, "timestamp": row.timestamp, "mean_normalized": row.mean, "tasks": tasks,
        })
    return {"ranking": RANKING_NOTE, "alpha": 0.05, "entries": entries}


def board_markdown(rows: Sequence[BoardRow], title: str) -> str:
    """The cross-run board as a markdown table: score ± stderr per task, then the ranking key."""
    tasks = list(dict.fromkeys(t for row in rows for t in row.scores))
    lines = [f"# {title}", "", RANKING_NOTE, "", "| # | run | stage | " + " | ".join(tasks) + " | mean normalized |",
             "|---|---|---|" + "---:|" * (len(tasks) + 1)]
    for rank, row in enumerate(rows, 1):
        cells = [board_cell(row, t) for t in tasks]
        lines.append(f"| {rank} | {row.run_name} | {row.stage} | " + " | ".join(cells) + f" | {row.mean:.3f} |")
    return "\n".join(lines) + "\n"


def board_cell(row: BoardRow, task: str) -> str:
    if task not in row.scores:
        return "-"
    stderr = row.stats.get(task, {}).get("stderr")
    text = f"{row.scores[task]:.3f}" + (f" ±{stderr:.3f}" if stderr is not None else "")
    why = row.not_compared.get(task)
    return text + (f" (not ranked with the others: {why})" if why else "")


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
