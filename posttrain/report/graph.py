"""The report's stage graph: which stage starts from which, and what the latest run did with each stage.

What a run did (trained, resumed, reused from cache, failed) is read from each
stage's `stage.json` `history`, which the runner appends to every time it handles
the stage, so `posttrain report RUN` written any time later tells the same story
as the run itself.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from posttrain.report.blocks import Section, Table, num, when
from posttrain.report.collect import RunData, StageData

HISTORY_SHOWN = 6
"""The latest entries of a stage's history the table shows."""

_WHY = {"forced": "trained (--force)", "rerun": "retrained (changed or unfinished before)", "run": "trained"}


def when_run(run: str) -> str:
    """A run id (ISO-8601 UTC) as `YYYY-MM-DD HH:MM:SS UTC`; an id that does not parse is shown as is."""
    try:
        return datetime.fromisoformat(run).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return run


def _seconds(entry: dict[str, Any]) -> str:
    value = entry.get("seconds")
    return f" in {value:.0f} s" if isinstance(value, int | float) else ""


def outcome_text(entry: dict[str, Any]) -> str:
    """One history entry in words: `trained in 12 s`, `cached (reused)`, `resumed from checkpoint-4 in 3 s`."""
    outcome = entry.get("outcome")
    if outcome == "cached":
        return "cached (reused)"
    if outcome == "trained":
        return _WHY.get(str(entry.get("planned")), "trained") + _seconds(entry)
    if outcome == "resumed":
        return f"resumed from {entry.get('resumed_from', 'a checkpoint')}{_seconds(entry)}"
    if outcome == "failed":
        return "failed" + (f" after {entry['seconds']:.0f} s" if isinstance(entry.get("seconds"), int | float) else "")
    if outcome == "running":
        return "killed while training (or still running)"
    return str(outcome)


def latest_outcome(stage: StageData, latest_run: str | None) -> str:
    """What the run directory's latest run did with `stage`; said plainly when that run never reached it."""
    if not stage.history:  # written before stage histories existed: only the status is known
        return stage.status
    last = stage.history[-1]
    text = outcome_text(last)
    if latest_run and last.get("run") != latest_run:
        return f"not in the latest run (last: {text}, run of {when_run(str(last.get('run')))})"
    return text


def _history_text(stage: StageData) -> str:
    shown = stage.history[-HISTORY_SHOWN:]
    lines = [f"{when_run(str(h.get('run')))}: {h.get('outcome', '?')}" for h in shown]
    if len(stage.history) > len(shown):
        lines.insert(0, f"… {len(stage.history) - len(shown)} earlier")
    return "\n".join(lines) or "-"


def chains(run: RunData) -> list[list[str]]:
    """Each path from the base to a stage no other stage starts from: base → sft → dpo."""
    by_name = {s.name: s for s in run.stages}
    started_from = {s.input for s in run.stages}
    out = []
    for stage in run.stages:
        if stage.name in started_from:
            continue
        path, node = [stage.name], stage
        while node.input in by_name and node.input not in path:
            node = by_name[node.input]
            path.insert(0, node.name)
        out.append([node.input, *path])
    return out


def stage_graph(runs: Sequence[RunData]) -> Section:
    """Which stage starts from which, teachers, data, and what the latest run did with each stage."""
    html_parts, md_parts = [], []
    header = ["stage", "type", "starts from", "teacher", "data", "latest run", "weights trained", "train seconds",
              "runs of this stage"]
    for run in runs:
        table = Table(header, [], {7})
        latest = run.latest_run
        for s in run.stages:
            table.rows.append([
                s.name, s.type, s.input, ", ".join(s.teachers) or "-", s.data or "-", latest_outcome(s, latest),
                when(s.finished), num(s.seconds, 0), _history_text(s),
            ])
        flows = chains(run)
        teacher_edges = [f"{t} ⇢ {s.name} (teacher)" for s in run.stages for t in s.teachers]
        flow_html = "".join(
            "<div class='chain'>" + " <span class='arrow'>→</span> ".join(
                f"<span class='node'>{html.escape(n)}</span>" for n in chain) + "</div>"
            for chain in flows
        ) + "".join(f"<div class='chain teacher'>{html.escape(e)}</div>" for e in teacher_edges)
        title = f"<h3>{html.escape(run.name)}</h3>" if len(runs) > 1 else ""
        started = f"latest run started {when_run(latest)}" if latest else "no run history recorded"
        legend = (f"{started}. 'latest run' is what that run did with the stage; 'weights trained' and "
                  "'train seconds' describe the training that made the stage's current weights.")
        html_parts.append(title + f"<div class='graph'>{flow_html}</div>" + table.html("stages")
                          + f"<p class='legend'>{html.escape(legend)}</p>")
        md_title = f"### {run.name}\n\n" if len(runs) > 1 else ""
        flow_md = "".join(f"    {' → '.join(chain)}\n" for chain in flows) + "".join(f"    {e}\n" for e in teacher_edges)
        md_parts.append(md_title + flow_md + "\n" + table.md() + f"\n{legend}\n")
    return Section("graph", "Stages", "".join(html_parts), "\n".join(md_parts))
