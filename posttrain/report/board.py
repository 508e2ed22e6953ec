"""The cross-run board as CSV and as one HTML page: every run and stage, sortable, filterable by task.

Rows come from the shared SQLite board (leaderboard/store.py). Intervals and the
paired tests of each delta are shown when the board has recorded them
(`BoardRow.stats` / `BoardRow.deltas`); older boards show scores only.
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posttrain.report.page import CSS, JS
from posttrain.run_layout import RunDir


def _tasks(rows: Sequence[Any]) -> list[str]:
    return list(dict.fromkeys(t for row in rows for t in row.scores))


def _interval(row: Any, task: str) -> tuple[float, float] | None:
    stats = (getattr(row, "stats", None) or {}).get(task) or {}
    low, high = stats.get("ci_low"), stats.get("ci_high")
    return (float(low), float(high)) if low is not None and high is not None else None


def _deltas(row: Any, task: str) -> list[Any]:
    return list((getattr(row, "deltas", None) or {}).get(task) or [])


def board_csv(rows: Sequence[Any]) -> str:
    """One line per (run, stage, task): score, 95% interval when known, and the entry's mean."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "stage", "task", "score", "ci_low", "ci_high", "mean_normalized", "fingerprint", "model", "when",
                     "not_compared"])
    for row in rows:
        for task, score in row.scores.items():
            interval = _interval(row, task)
            low, high = (f"{v:.6g}" for v in interval) if interval else ("", "")
            writer.writerow([
                row.run_name, row.stage, task, f"{score:.6g}", low, high, f"{row.mean:.6g}", row.fingerprint, row.model_ref, row.timestamp,
                (getattr(row, "not_compared", None) or {}).get(task, ""),
            ])
    return out.getvalue()


def _cell(row: Any, task: str) -> str:
    if task not in row.scores:
        return "–"
    text = f"{row.scores[task]:.3f}"
    interval = _interval(row, task)
    if interval:
        text += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    for d in _deltas(row, task):
        mark = "*" if getattr(d, "significant", False) else ""
        text += f"\nΔ vs {d.versus} {d.delta:+.3f}{mark}"
    why = (getattr(row, "not_compared", None) or {}).get(task)
    if why:
        text += f"\nnot ranked with the others: {why}"
    return text


def board_html(rows: Sequence[Any], *, runs_dir: Path, out_path: Path) -> str:
    """The page: a task filter, one row per (run, stage), columns per task, links to each run's report."""
    tasks = _tasks(rows)
    options = "".join(f"<option value='{html.escape(t)}'>{html.escape(t)}</option>" for t in tasks)
    head = "".join(f"<th data-task='{html.escape(t)}'>{html.escape(t)}</th>" for t in tasks)
    body = []
    for rank, row in enumerate(rows, 1):
        report = RunDir(runs_dir / row.run_name).report_html
        link = html.escape(os.path.relpath(report, out_path.parent))
        run_cell = (f"<a href='{link}'>{html.escape(row.run_name)}</a>" if report.exists()
                    else html.escape(row.run_name))
        cells = "".join(
            f"<td class='num' data-task='{html.escape(t)}'>{html.escape(_cell(row, t))}</td>" for t in tasks
        )
        body.append(
            f"<tr data-tasks='{html.escape(' '.join(row.scores))}'><td class='num'>{rank}</td><td>{run_cell}</td>"
            f"<td>{html.escape(row.stage)}</td>{cells}<td class='num'>{row.mean:.3f}</td>"
            f"<td>{html.escape(row.timestamp)}</td></tr>"
        )
    table = (
        "<table class='board'><thead><tr><th>#</th><th>run</th><th>stage</th>" + head +
        "<th>mean (chance-normalized)</th><th>when</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>"
    )
    legend = ("Click a column to sort. Score [95% interval]; Δ marked * passed a paired test (p < 0.05). "
              "A score taken under another evaluation protocol than the task's other rows (documents, shots, "
              "template, generation settings, lm-eval version) is listed after them and says why. "
              "Runs link to their report.")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>posttrain leaderboard</title>"
        f"<style>{CSS}</style></head><body><header><h1>posttrain leaderboard</h1>"
        f"<p>{len(rows)} models from {len({r.run_name for r in rows})} runs in {html.escape(str(runs_dir))}</p>"
        "</header><div id='js-errors'></div><main><section id='board'>"
        f"<div class='filter'>task: <select id='task-filter' onchange='filterTask(this)'><option value=''>all</option>"
        f"{options}</select></div>{table}<p class='legend'>{legend}</p></section></main>"
        f"<script>{JS}</script></body></html>"
    )


def write_board_html(rows: Sequence[Any], runs_dir: Path, out_path: Path | None = None) -> Path:
    """Write the board page (default `<runs_dir>/leaderboard.html`) and return its path."""
    out_path = out_path or runs_dir / "leaderboard.html"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(board_html(rows, runs_dir=runs_dir, out_path=out_path), encoding="utf-8")
    return out_path
