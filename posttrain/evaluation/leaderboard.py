"""What each stage bought: score tables (rich and markdown) and a SQLite leaderboard.

Rows come in pipeline order, base model first. Each stage's score is shown with
its delta against the base and against the stage it was trained from (its
input; by default the row before it). A distilled student also shows its
retention: student score / teacher score (`extra["teacher"]`, a row label, or
`extra["teacher_scores"]` for a teacher outside the pipeline).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table


@dataclass
class StageScores:
    label: str  # "base", "sft", ...
    scores: dict[str, float]  # task -> headline score
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"input": "sft", "seconds": 12.3}


@dataclass(frozen=True)
class Cell:
    score: float | None
    vs_base: float | None
    vs_input: float | None
    retention: float | None = None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _teacher_scores(row: StageScores, by_label: dict[str, StageScores]) -> dict[str, float] | None:
    if "teacher_scores" in row.extra:
        return row.extra["teacher_scores"]
    teacher = by_label.get(str(row.extra["teacher"])) if "teacher" in row.extra else None
    return teacher.scores if teacher is not None else None


def task_columns(rows: Sequence[StageScores]) -> list[str]:
    """Every task seen, in first-seen order."""
    seen: list[str] = []
    for row in rows:
        seen += [t for t in row.scores if t not in seen]
    return seen


def compute_cells(rows: Sequence[StageScores]) -> list[dict[str, Cell]]:
    """Per row, per task: score and deltas. The first row is the base; a row's
    input is `extra["input"]` (a label) when given, else the row before it."""
    if not rows:
        return []
    base = rows[0].scores
    by_label = {r.label: r for r in rows}
    out: list[dict[str, Cell]] = []
    for i, row in enumerate(rows):
        parent = by_label.get(str(row.extra.get("input"))) if "input" in row.extra else None
        if parent is None and i > 0:
            parent = rows[i - 1]
        teacher = _teacher_scores(row, by_label)
        cells = {}
        for task in task_columns(rows):
            score = row.scores.get(task)
            cells[task] = Cell(
                score=score,
                vs_base=_delta(score, base.get(task)) if i > 0 else None,
                vs_input=_delta(score, parent.scores.get(task)) if i > 1 and parent is not rows[0] else None,
                retention=_ratio(score, teacher.get(task)) if teacher is not None else None,
            )
        out.append(cells)
    return out


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


# --- persistent leaderboard ------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run_name    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    model_ref   TEXT NOT NULL,
    task        TEXT NOT NULL,
    score       REAL NOT NULL,
    timestamp   TEXT NOT NULL,
    PRIMARY KEY (run_name, stage, fingerprint, task)
)
"""


@dataclass(frozen=True)
class BoardRow:
    run_name: str
    stage: str
    model_ref: str
    fingerprint: str
    timestamp: str
    scores: dict[str, float]

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0


def _connect(db_path: Path) -> sqlite3.Connection:
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    conn.execute(_SCHEMA)
    return conn


def record(
    db_path: Path,
    run_name: str,
    stage: str,
    model_ref: str,
    scores: dict[str, float],
    fingerprint: str,
    timestamp: str,
) -> None:
    """Store one stage's headline scores; the same (run, stage, fingerprint) is replaced, not duplicated."""
    with _connect(db_path) as conn:
        conn.execute("DELETE FROM results WHERE run_name=? AND stage=? AND fingerprint=?",
                     (run_name, stage, fingerprint))
        conn.executemany(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(run_name, stage, fingerprint, model_ref, t, float(s), timestamp) for t, s in scores.items()],
        )
    conn.close()


def top(db_path: Path, task: str | None = None, limit: int | None = None) -> list[BoardRow]:
    """Entries best first: by `task`'s score when given (entries lacking it are left out),
    else by the mean over the tasks each entry has."""
    if not Path(db_path).exists():
        return []
    conn = _connect(db_path)
    try:
        raw = conn.execute(
            "SELECT run_name, stage, fingerprint, model_ref, timestamp, task, score FROM results "
            "ORDER BY run_name, stage, fingerprint, task"
        ).fetchall()
    finally:
        conn.close()
    grouped: dict[tuple[str, str, str], BoardRow] = {}
    for run, stage, fp, ref, ts, t, score in raw:
        row = grouped.setdefault((run, stage, fp), BoardRow(run, stage, ref, fp, ts, {}))
        row.scores[t] = score
    rows = [r for r in grouped.values() if task is None or task in r.scores]
    rows.sort(key=lambda r: (-(r.scores[task] if task else r.mean), r.timestamp, r.run_name, r.stage))
    return rows[:limit] if limit is not None else rows
