"""The report's Exports section: what each exported artifact scores inside its own engine, next to the merged
model it came from, and the table of exported formats.

Per stage with scored artifacts (`<stage>/export/scored/<artifact>/`, read by collect.read_scored), one table:
the merged model in transformers first (the stage's own evaluation, the reference), then one row per artifact
with its score, the change against the merged model with the paired test's verdict, size on disk, speed, peak
memory, the parity checks and the command that runs it; a quality-vs-size plot per stage. What a file does not
say, or says in a shape it should not, becomes a note under the table: the report never stops at a bad file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.report import plots
from posttrain.report.answers import paired
from posttrain.report.blocks import Cell, Section, Table, img, prefix
from posttrain.report.collect import EvalData, RunData, ScoredArtifact, StageData

PARITY = (("chat_template", "chat template"), ("end_of_turn", "end of turn"), ("greedy_tokens", "greedy tokens"))
"""artifact.json `parity` keys → column headings, in the order the table shows them."""

MARKS = {True: "✓", False: "✗", None: "–"}
"""A parity check that held, failed, or does not apply (greedy tokens are compared for f16 only)."""

WORSE, BETTER = "▼", "▲"
"""Marks of a change a paired test finds significant: the artifact loses / gains against the merged model."""

HEADER = ["model", "engine", "score [95%]", "Δ vs merged [95%]", "verdict", "size (MB)", "prompt tok/s",
          "generation tok/s", "peak memory (MB)", *(title for _, title in PARITY), "run with"]

LEGEND = (f"The merged model in transformers (the stage's own evaluation) is the reference; each exported artifact "
          f"was scored inside its engine on the same documents. Δ vs merged with its 95% interval; the verdict is a "
          f"paired test per document: {WORSE} loses / {BETTER} gains significantly (p < 0.05). Parity: ✓ holds, "
          f"✗ fails, – not applicable (greedy tokens are compared for f16 only), ? not recorded; the notes say why.")

_EXPECTED = ("tasks", "size_bytes", "speed", "parity", "command")
"""artifact.json fields a complete scoring writes: a missing one is said under the table."""


@dataclass
class TaskResult:
    """One artifact on one task, as the row shows it."""

    score: float | None = None
    ci: tuple[float, float] | None = None
    delta: float | None = None
    delta_ci: tuple[float, float] | None = None
    p_value: float | None = None
    significant: bool | None = None
    verdict: str = ""
    skipped: str | None = None
    """Why the engine did not score the task (artifact.json `skipped_tasks`)."""


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = _number(value[0]), _number(value[1])
        if low is not None and high is not None:
            return low, high
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def megabytes(size: int | None) -> str:
    """Bytes as MB (10⁶ bytes) with three significant figures below 100 MB, or `-`."""
    if size is None:
        return "-"
    mb = size / 1e6
    return f"{mb:.0f}" if mb >= 100 else f"{mb:.1f}" if mb >= 1 else f"{mb:.2f}"


def task_result(artifact: ScoredArtifact, task: str, reference: EvalData | None) -> TaskResult:
    """What artifact.json says of `task`, completed from the two evaluations where it is silent: the score from
    the artifact's eval.json, Δ from the two scores, the paired test from both evaluations' samples."""
    record = artifact.record or {}
    skipped = _dict(record.get("skipped_tasks"))
    entry = _dict(_dict(record.get("tasks")).get(task))
    own = artifact.eval
    result = TaskResult(score=_number(entry.get("score")), ci=_pair(entry.get("ci95")),
                        delta=_number(entry.get("delta")), delta_ci=_pair(entry.get("delta_ci95")),
                        p_value=_number(entry.get("p_value")))
    if result.score is None and own is not None:
        result.score = _number(own.scores.get(task))
    if result.ci is None and own is not None:
        result.ci = own.intervals.get(task)
    if result.score is None:
        result.skipped = str(skipped[task]) if task in skipped else None
        return result
    ref_score = _number(reference.scores.get(task)) if reference is not None else None
    if ref_score is None:
        ref_score = _number(entry.get("reference_score"))
    if result.delta is None and ref_score is not None:
        result.delta = result.score - ref_score
    if isinstance(entry.get("significant"), bool):
        result.significant = entry["significant"]
    elif result.p_value is not None:
        result.significant = result.p_value < 0.05
    elif own is not None and reference is not None and (test := paired(reference, own, task)) is not None:
        result.p_value, result.significant = test.p_value, test.significant if test.p_value is not None else None
    if isinstance(entry.get("verdict"), str) and entry["verdict"].strip():
        result.verdict = entry["verdict"].strip()
    elif result.significant is None or result.delta is None:
        result.verdict = "no paired test"
    elif result.significant:
        result.verdict = f"{'loses' if result.delta < 0 else 'gains'} {abs(result.delta):.2f}, significant"
    else:
        result.verdict = "within noise"
    return result


def _score_text(score: float | None, ci: tuple[float, float] | None) -> str:
    if score is None:
        return "-"
    return f"{score:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _delta_text(r: TaskResult) -> str:
    if r.delta is None:
        return "–"
    return f"{r.delta:+.3f}" + (f" [{r.delta_ci[0]:+.2f}, {r.delta_ci[1]:+.2f}]" if r.delta_ci else "")


def _verdict_text(r: TaskResult) -> str:
    mark = ""
    if r.significant and r.delta is not None:
        mark = f"{WORSE if r.delta < 0 else BETTER} "
    p = f" (p = {r.p_value:.3g})" if r.p_value is not None else ""
    return f"{mark}{r.verdict}{p}"


def _lines(tasks: Sequence[str], texts: Sequence[str]) -> str:
    """One line per task, named when there are several."""
    if len(tasks) == 1:
        return texts[0]
    return "\n".join(f"{task}: {text}" for task, text in zip(tasks, texts, strict=True))


def _parity_cell(name: str, label: str, check: Any, notes: list[str]) -> Cell:
    if not isinstance(check, dict) or check.get("ok", "?") not in MARKS:
        notes.append(f"{name}: {label} not recorded")
        return Cell("?", "unknown", "not recorded")
    mark = MARKS[check["ok"]]
    detail = str(check.get("detail") or "").strip()
    if check["ok"] is not True:  # a failure, or why the check does not apply: a markdown reader needs it too
        notes.append(f"{name}: {label} {mark}" + (f": {detail}" if detail else ""))
    return Cell(mark, "fail" if check["ok"] is False else "", detail)


def _artifact_row(artifact: ScoredArtifact, tasks: Sequence[str], reference: EvalData | None,
                  notes: list[str]) -> tuple[list[str | Cell], dict[str, TaskResult]]:
    record = artifact.record or {}
    name = artifact.name
    missing = [key for key in _EXPECTED if key not in record]
    if missing:
        notes.append(f"{name}: artifact.json has no {', '.join(missing)} (a scoring cut short or an older one)")
    results = {task: task_result(artifact, task, reference) for task in tasks}
    scores, deltas, verdicts = [], [], []
    for task, r in results.items():
        if r.score is None:
            why = r.skipped
            scores.append("skipped" if why is not None else "not scored")
            deltas.append("–")
            verdicts.append("–")
            notes.append(f"{name} skipped {task}: {why}" if why is not None else f"{name} has no score for {task}")
            continue
        scores.append(_score_text(r.score, r.ci))
        deltas.append(_delta_text(r))
        verdicts.append(_verdict_text(r))
    significant = [r for r in results.values() if r.significant and r.delta is not None]
    css = "worse" if any(r.delta < 0 for r in significant) else "better" if significant else ""
    speed = _dict(record.get("speed"))
    parity = _dict(record.get("parity"))
    engine = " ".join(str(record[k]) for k in ("engine", "engine_version") if record.get(k)) or "?"
    command = record.get("command")
    row: list[str | Cell] = [
        name, engine, _lines(tasks, scores), _lines(tasks, deltas), Cell(_lines(tasks, verdicts), css),
        megabytes(artifact.size_bytes), *(_fixed(speed.get(k), d) for k, d in (
            ("prompt_tokens_per_s", 1), ("generation_tokens_per_s", 1), ("peak_memory_mb", 0))),
        *(_parity_cell(name, label, parity.get(key), notes) for key, label in PARITY),
        command if isinstance(command, str) and command else "-",
    ]
    return row, results


def _fixed(value: Any, digits: int) -> str:
    number = _number(value)
    return f"{number:.{digits}f}" if number is not None else "-"


def _reference_row(stage: StageData, tasks: Sequence[str]) -> list[str | Cell]:
    e = stage.eval
    scores = [_score_text(_number(e.scores.get(t)), e.intervals.get(t)) if e else "-" for t in tasks]
    merged = next((x for x in stage.exports if x.get("format") == "merged"), None)
    return ["merged", "transformers", _lines(tasks, scores), "–", "reference", megabytes(stage.merged_bytes),
            "-", "-", "-", *(Cell("–", "", "the reference itself") for _ in PARITY),
            _serve_command(merged) if merged else "-"]


def _stage_tasks(stage: StageData) -> list[str]:
    """The stage's own tasks, then any an artifact scored or skipped beyond them."""
    tasks = list(stage.eval.scores) if stage.eval else []
    for artifact in stage.scored:
        record = artifact.record or {}
        tasks += [str(t) for t in (*_dict(record.get("tasks")), *_dict(record.get("skipped_tasks")))]
    return list(dict.fromkeys(tasks))


def stage_block(run: RunData, runs: Sequence[RunData], stage: StageData) -> tuple[str, str, dict[str, bytes]]:
    """One stage's table of scored artifacts, its notes and its quality-vs-size plot: (html, markdown, images)."""
    label = f"{prefix(run, runs)}{stage.name}"
    tasks = _stage_tasks(stage)
    notes: list[str] = []
    if stage.eval is None:
        notes.append(f"{stage.name} has no readable eval.json: no reference to compare the artifacts with")
    table = Table(HEADER, [_reference_row(stage, tasks)] if tasks else [], {2, 3, 5, 6, 7, 8})
    results: dict[str, dict[str, TaskResult]] = {}
    for artifact in stage.scored:
        notes += [f"{artifact.name}: {problem}" for problem in artifact.problems]
        if artifact.record is None:
            continue  # nothing to show but the problem, said above
        row, results[artifact.name] = _artifact_row(artifact, tasks, stage.eval, notes)
        table.rows.append(row)
    if not tasks:
        notes.append("no task scores in the stage's or the artifacts' files")
    on = f" on {tasks[0]}" + (f" ({stage.eval.metric[tasks[0]]})" if stage.eval and tasks[0] in stage.eval.metric
                                else "") if len(tasks) == 1 else ""
    title = f"{label}: the merged model and its exports, scored in their engines{on}"
    html_part = f"<h3>{html.escape(title)}</h3>" + table.html("scored")
    md_part = f"### {title}\n\n" + table.md()
    if notes:
        html_part += "<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        md_part += "\n" + "".join(f"- {n}\n" for n in notes)
    html_part += f"<p class='legend'>{html.escape(LEGEND)}</p>"
    md_part += f"\n{LEGEND}\n"
    images = {}
    png = plots.quality_size_png(f"{label}: quality vs size on disk", quality_size_panels(stage, tasks, results))
    if png is not None:
        name = f"quality-size-{run.name}-{stage.name}.png"
        images[name] = png
        tag, link = img(name, f"quality vs size of {label}")
        html_part += f"<figure>{tag}</figure>"
        md_part += "\n" + link
    return html_part, md_part, images


def quality_size_panels(stage: StageData, tasks: Sequence[str],
                        results: dict[str, dict[str, TaskResult]]) -> list[plots.QualityPanel]:
    """Per task, the merged model and every artifact with both a score and a size on disk."""
    sizes = {a.name: a.size_bytes for a in stage.scored}
    panels = []
    for task in tasks:
        e = stage.eval
        panel = plots.QualityPanel(task, _number(e.scores.get(task)) if e else None, e.intervals.get(task) if e else None,
                                   stage.merged_bytes / 1e6 if stage.merged_bytes is not None else None)
        for name, by_task in results.items():
            r, size = by_task.get(task), sizes.get(name)
            if r is not None and r.score is not None and size is not None:
                panel.points.append((name, size / 1e6, r.score, r.ci))
        panels.append(panel)
    return panels


# The table of exported formats (every stage, scored or not).

def _serve_command(entry: dict[str, Any]) -> str:
    for key in ("command_line", "serve", "run"):
        if isinstance(entry.get(key), str):
            return entry[key]
    return "-"


def _why_not_exported(stage: StageData) -> str:
    if stage.full_model:
        return (f"a whole model has no LoRA adapter for peft; its weights are in {stage.name}/model "
                "(export.formats: [merged] writes a serving copy)")
    return "no format was exported for this stage (formats of a whole model are written for the last stage only)"


def formats_table(runs: Sequence[RunData]) -> tuple[str, str] | None:
    """Each stage's exported formats, what was checked, and the command that serves them; None when none."""
    table = Table(["stage", "format", "path", "checks", "serve with"], [])
    serving: list[str] = []
    for run in runs:
        for s in run.stages:
            for entry in s.exports:
                checks = entry.get("checks") or entry.get("checked_against") or "-"
                if isinstance(checks, dict):
                    checks = ", ".join(f"{k}: {v}" for k, v in checks.items())
                elif isinstance(checks, list):
                    checks = ", ".join(map(str, checks))
                table.rows.append([f"{prefix(run, runs)}{s.name}", entry.get("format", "?"), str(entry.get("path", "")),
                                   str(checks), _serve_command(entry)])
                if isinstance(entry.get("serving"), str):
                    serving.append(entry["serving"])
            if not s.exports:  # said, so a reader does not take the missing row for a failed export
                table.rows.append([f"{prefix(run, runs)}{s.name}", "none", "-", "-", _why_not_exported(s)])
    if not any(row[1] != "none" for row in table.rows):
        return None
    return (table.html("exports") + "".join(f"<pre class='serving'>{html.escape(text)}</pre>" for text in serving),
            table.md() + "".join(f"\n```\n{text}\n```\n" for text in serving))


def exports_section(runs: Sequence[RunData]) -> Section:
    """The scored artifacts of each stage (when any were scored), then the exported formats."""
    formats = formats_table(runs)
    formats_html, formats_md = formats or ("<p>No exports yet.</p>", "No exports yet.\n")
    blocks = [stage_block(run, runs, s) for run in runs for s in run.stages if s.scored]
    if not blocks:  # nothing scored in an engine: the section is the formats table alone
        return Section("exports", "Exports", formats_html, formats_md)
    images = {name: data for _, _, imgs in blocks for name, data in imgs.items()}
    return Section(
        "exports", "Exports",
        "".join(h for h, _, _ in blocks) + "<h3>Exported formats</h3>" + formats_html,
        "\n".join(m for _, m, _ in blocks) + "\n### Exported formats\n\n" + formats_md, images,
    )
