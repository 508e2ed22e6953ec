"""The cross-run leaderboard: every evaluated model of every run, in one SQLite file.

Each (model, task) row keeps the score with its standard error, 95% interval,
document count and chance-normalized score; each delta of a run (vs base, vs
input) keeps the paired test that judged it. Boards written before these
columns existed are migrated in place (the new columns stay empty for their
rows). The ranking uses the mean chance-normalized score (Open LLM Leaderboard
v2 style), so a 4-way multiple-choice task at chance counts as 0, like a
generation task nobody solves.

Each (model, task) also keeps the protocol it was scored under (task file hash, shots, template, generation
settings, limit, lm-eval version). Rows of one task scored under different protocols are not ranked together:
the protocol most rows share is the task's reference, and a row under another one is listed after the
comparable rows with the reason (`BoardRow.not_compared`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.evaluation.record import protocols_differ
from posttrain.evaluation.stats import TaskStats
from posttrain.failpoints import failpoint

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
_DELTAS = """
CREATE TABLE IF NOT EXISTS deltas (
    run_name    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    task        TEXT NOT NULL,
    versus      TEXT NOT NULL,
    other       TEXT NOT NULL,
    delta       REAL NOT NULL,
    test        TEXT,
    p_value     REAL,
    n_paired    INTEGER,
    note        TEXT,
    PRIMARY KEY (run_name, stage, fingerprint, task, versus)
)
"""
_STATS_COLUMNS = {
    "metric": "TEXT", "stderr": "REAL", "ci_low": "REAL", "ci_high": "REAL", "n": "INTEGER",
    "chance": "REAL", "normalized": "REAL", "protocol": "TEXT",
}


@dataclass(frozen=True)
class BoardDelta:
    versus: str
    """base or input."""
    other: str
    """The stage compared with."""
    delta: float
    test: str | None
    p_value: float | None
    n_paired: int | None
    note: str | None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 0.05


@dataclass(frozen=True)
class BoardRow:
    run_name: str
    stage: str
    model_ref: str
    fingerprint: str
    timestamp: str
    scores: dict[str, float]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task → metric, stderr, ci_low, ci_high, n, chance, normalized (None where not recorded)."""
    deltas: dict[str, list[BoardDelta]] = field(default_factory=dict)
    not_compared: dict[str, str] = field(default_factory=dict)
    """Task → why this row is not ranked with the task's other rows (its protocol differs from theirs)."""

    def protocol(self, task: str) -> dict[str, Any] | None:
        """How `task` was scored for this row; None for a row recorded before protocols were kept."""
        text = self.stats.get(task, {}).get("protocol")
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def normalized(self, task: str) -> float:
        """Chance-normalized score; a row recorded before chance levels were kept counts its raw score."""
        value = self.stats.get(task, {}).get("normalized")
        return float(value) if value is not None else self.scores[task]

    @property
    def mean(self) -> float:
        """Mean chance-normalized score over this entry's tasks (the ranking key)."""
        return sum(self.normalized(t) for t in self.scores) / len(self.scores) if self.scores else 0.0


def _connect(db_path: Path) -> sqlite3.Connection:
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    # Runs sharing a workspace write the board at once: wait for the other writer instead of failing.
    conn = sqlite3.connect(db_path, timeout=120)
    conn.execute(_SCHEMA)
    conn.execute(_DELTAS)
    have = {row[1] for row in conn.execute("PRAGMA table_info(results)")}
    for name, kind in _STATS_COLUMNS.items():
        if name not in have:  # a board from before stats were kept: add the column, old rows stay NULL
            try:
                conn.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process migrated it first
                    raise
    return conn


def record(
    db_path: Path,
    run_name: str,
    stage: str,
    model_ref: str,
    scores: dict[str, float],
    fingerprint: str,
    timestamp: str,
    *,
    stats: dict[str, TaskStats] | None = None,
    deltas: Sequence[tuple[str, str, str, Any]] = (),
    protocols: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Store one model's headline scores (with stats and protocols when known) and its deltas
    `(task, versus, other, DeltaTest)`.

    The same (run, stage, fingerprint) is replaced, not duplicated.
    """
    stats, protocols = stats or {}, protocols or {}
    key = (run_name, stage, fingerprint)
    rows = []
    for task, score in scores.items():
        s = stats.get(task)
        ci = s.ci95 if s and s.ci95 else (None, None)
        rows.append((
            *key, model_ref, task, float(score), timestamp, s.metric if s else None, s.stderr if s else None,
            ci[0], ci[1], s.n if s else None, s.chance if s else None, s.normalized if s else None,
            json.dumps(protocols[task], sort_keys=True) if isinstance(protocols.get(task), dict) else None,
        ))
    with _connect(db_path) as conn:
        conn.execute("DELETE FROM results WHERE run_name=? AND stage=? AND fingerprint=?", key)
        conn.execute("DELETE FROM deltas WHERE run_name=? AND stage=? AND fingerprint=?", key)
        conn.executemany(
            "INSERT INTO results (run_name, stage, fingerprint, model_ref, task, score, timestamp, metric, stderr, "
            "ci_low, ci_high, n, chance, normalized, protocol) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO deltas VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*key, task, versus, other, t.delta, t.test, t.p_value, t.n_paired, t.note)
             for task, versus, other, t in deltas],
        )
    conn.close()


def top(db_path: Path, task: str | None = None, limit: int | None = None) -> list[BoardRow]:
    """Entries best first: by `task`'s score when given (entries lacking it are left out),
    else by the mean chance-normalized score over the tasks each entry has."""
    if not Path(db_path).exists():
        return []
    conn = _connect(db_path)
    try:
        raw = conn.execute(
            "SELECT run_name, stage, fingerprint, model_ref, timestamp, task, score, metric, stderr, ci_low, "
            "ci_high, n, chance, normalized, protocol FROM results ORDER BY run_name, stage, fingerprint, rowid"
        ).fetchall()
        raw_deltas = conn.execute(
            "SELECT run_name, stage, fingerprint, task, versus, other, delta, test, p_value, n_paired, note "
            "FROM deltas ORDER BY run_name, stage, fingerprint, task, versus"
        ).fetchall()
    finally:
        conn.close()
    grouped: dict[tuple[str, str, str], BoardRow] = {}
    for run, stage, fp, ref, ts, t, score, *extra in raw:
        row = grouped.setdefault((run, stage, fp), BoardRow(run, stage, ref, fp, ts, {}))
        row.scores[t] = score
        row.stats[t] = dict(zip(_STATS_COLUMNS, extra, strict=True))
    for run, stage, fp, t, *rest in raw_deltas:
        if (run, stage, fp) in grouped:
            grouped[(run, stage, fp)].deltas.setdefault(t, []).append(BoardDelta(*rest))
    rows = [r for r in grouped.values() if task is None or task in r.scores]
    mark_other_protocols(rows)
    # Comparable rows first, best first; a row scored under another protocol follows them, unranked among them.
    rows.sort(key=lambda r: (bool(r.not_compared if task is None else task in r.not_compared),
                             -(r.scores[task] if task else r.mean), r.timestamp, r.run_name, r.stage))
    return rows[:limit] if limit is not None else rows


def mark_other_protocols(rows: Sequence[BoardRow]) -> None:
    """Fill each row's `not_compared`: per task, the protocol most rows share is the reference (ties: the
    newest row's); a row scored under another one is told why. Rows without a recorded protocol are compared."""
    for task in dict.fromkeys(t for row in rows for t in row.scores):
        known = [(row, p) for row in rows if task in row.scores and (p := row.protocol(task)) is not None]
        if not known:
            continue
        newest_first = [json.dumps(p, sort_keys=True) for _, p in sorted(known, key=lambda x: x[0].timestamp, reverse=True)]
        counts = Counter(newest_first)
        reference = json.loads(max(newest_first, key=counts.__getitem__))  # max keeps the first: ties → newest
        for row, protocol in known:
            why = protocols_differ(protocol, reference)
            if why is not None:
                row.not_compared[task] = why


def record_run(
    db_path: Path, run_name: str, model_ref: str, rows: Sequence[Any], fingerprints: dict[str, str], timestamp: str
) -> None:
    """Record every scored row of a run's leaderboard (`StageScores`), with stats and judged deltas."""
    from posttrain.leaderboard.table import compute_cells

    for i, (row, cells) in enumerate(zip(rows, compute_cells(rows), strict=True)):
        if not row.scores:
            continue
        parent = row.input or (rows[i - 1].label if i else "")
        deltas = []
        for task, cell in cells.items():
            if cell.test_base is not None:
                deltas.append((task, "base", rows[0].label, cell.test_base))
            if cell.test_input is not None:
                deltas.append((task, "input", parent, cell.test_input))
        stats = row.evidence.stats if row.evidence else None
        protocols = row.evidence.protocol if row.evidence else None
        record(db_path, run_name, row.label, model_ref, row.scores, fingerprints[row.label], timestamp,
               stats=stats, deltas=deltas, protocols=protocols)
        failpoint("leaderboard")  # a kill between rows: the rerun must neither lose nor duplicate any
