"""The cross-run leaderboard: every evaluated model of every run, in one SQLite file."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

LEADERBOARD_DB = "leaderboard.sqlite"
"""File name of the shared board inside a runs directory."""

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
