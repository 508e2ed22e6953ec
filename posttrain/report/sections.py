"""The report's sections, each built once as a `Section` holding both its HTML and its markdown.

A section reads `RunData` (report/collect.py) and never a file, so the run report
(one run) and the compare page (two runs) are built from the same functions.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from posttrain.report import plots
from posttrain.report.answers import paired, side_by_side
from posttrain.report.collect import BASE, EvalData, RunData


@dataclass
class Section:
    id: str
    title: str
    html: str
    md: str
    images: dict[str, bytes] = field(default_factory=dict)
    """File name → PNG bytes: inlined in the HTML, written beside report.md and linked from it."""


@dataclass
class Table:
    """A table rendered both ways; cells are plain text (escaped on the way out)."""

    header: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)

    def html(self, css: str = "") -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(
                f"<td{' class=num' if i in self.numeric else ''}>{html.escape(c)}</td>" for i, c in enumerate(row)
            ) + "</tr>"
            for row in self.rows
        )
        return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def md(self) -> str:
        if not self.rows:
            return "_none_\n"
        align = ["---:" if i in self.numeric else "---" for i in range(len(self.header))]
        lines = ["| " + " | ".join(_md_cell(h) for h in self.header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _img(name: str, alt: str) -> tuple[str, str]:
    """The placeholder the page replaces with the inlined image, and the markdown link."""
    return f"<img class='plot' data-src='{name}' alt='{html.escape(alt)}'>", f"![{alt}](report/{name})\n"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ts else "-"


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _prefix(run: RunData, runs: Sequence[RunData]) -> str:
    return f"{run.name}/" if len(runs) > 1 else ""


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


def stage_graph(runs: Sequence[RunData], cached: set[str] | None = None) -> Section:
    """Which stage starts from which, teachers, data, and whether this run trained or reused each."""
    html_parts, md_parts = [], []
    for run in runs:
        table = Table(["stage", "type", "starts from", "teacher", "data", "status", "seconds", "finished"], [], {6})
        for s in run.stages:
            status = s.status
            if status == "completed":
                status = "cached (reused)" if cached is not None and s.name in cached else "trained"
            table.rows.append([
                s.name, s.type, s.input, ", ".join(s.teachers) or "-", s.data or "-", status,
                _num(s.seconds, 0), _when(s.finished),
            ])
        flows = chains(run)
        teacher_edges = [f"{t} ⇢ {s.name} (teacher)" for s in run.stages for t in s.teachers]
        flow_html = "".join(
            "<div class='chain'>" + " <span class='arrow'>→</span> ".join(
                f"<span class='node'>{html.escape(n)}</span>" for n in chain) + "</div>"
            for chain in flows
        ) + "".join(f"<div class='chain teacher'>{html.escape(e)}</div>" for e in teacher_edges)
        title = f"<h3>{html.escape(run.name)}</h3>" if len(runs) > 1 else ""
        html_parts.append(title + f"<div class='graph'>{flow_html}</div>" + table.html("stages"))
        md_title = f"### {run.name}\n\n" if len(runs) > 1 else ""
        flow_md = "".join(f"    {' → '.join(chain)}\n" for chain in flows) + "".join(f"    {e}\n" for e in teacher_edges)
        md_parts.append(md_title + flow_md + "\n" + table.md())
    return Section("graph", "Stages", "".join(html_parts), "\n".join(md_parts))


def data_section(runs: Sequence[RunData]) -> Section:
    """Per dataset: rows in and out of each curation step, rejects by reason, the length histogram."""
    html_parts, md_parts, images = [], [], {}
    for run in runs:
        for ds in run.datasets:
            steps = ds.report.get("steps") or []
            table = Table(["step", "rows in", "removed", "rows out", "removed because"], [], {1, 2, 3})
            for step in steps:
                reasons = ", ".join(f"{k}: {v}" for k, v in (step.get("reasons") or {}).items()) or "-"
                table.rows.append([str(step.get("step")), str(step.get("rows_in", "-")), str(step.get("removed", "-")),
                                   str(step.get("rows_out", "-")), reasons])
            malformed = sum(int(s.get("malformed") or 0) for s in ds.report.get("sources") or [])
            name = f"{_prefix(run, runs)}{ds.name}"
            kind = ds.report.get("kind", "?")
            summary = f"kind {kind}; {malformed} malformed source rows (rejects.jsonl)"
            html_parts.append(f"<h3>{html.escape(name)}</h3><p>{html.escape(summary)}</p>" + table.html("data"))
            md_parts.append(f"### {name}\n\n{summary}\n\n{table.md()}")
            if ds.lengths_png is not None:
                image = f"lengths-{run.name}-{ds.name}.png"
                images[image] = ds.lengths_png.read_bytes()
                tag, link = _img(image, f"token lengths of {name}")
                html_parts.append(f"<div class='lengths'>{tag}</div>")
                md_parts.append("\n" + link)
    if not html_parts:
        html_parts, md_parts = ["<p>No curated datasets in this run.</p>"], ["No curated datasets in this run.\n"]
    return Section("data", "Data", "".join(html_parts), "\n".join(md_parts), images)


def curves_section(runs: Sequence[RunData]) -> Section:
    """One figure per trained stage: loss, learning rate, grad norm and the stage type's own signals."""
    html_parts, md_parts, images = [], [], {}
    for run in runs:
        for s in run.stages:
            png = plots.curves_png(f"{_prefix(run, runs)}{s.name}", s.type, s.curves)
            if png is None:
                continue
            image = f"curves-{run.name}-{s.name}.png"
            images[image] = png
            tag, link = _img(image, f"training curves of {_prefix(run, runs)}{s.name}")
            html_parts.append(f"<figure>{tag}<figcaption>{html.escape(_curve_caption(s))}</figcaption></figure>")
            md_parts.append(link + f"\n{_curve_caption(s)}\n")
    if not html_parts:
        html_parts, md_parts = ["<p>No stage logged training metrics.</p>"], ["No stage logged training metrics.\n"]
    return Section("curves", "Training curves", "<div class='figures'>" + "".join(html_parts) + "</div>",
                   "\n".join(md_parts), images)


def _curve_caption(stage: Any) -> str:
    steps = [r.get("step") for r in stage.curves if isinstance(r.get("step"), int)]
    losses = [r["loss"] for r in stage.curves if isinstance(r.get("loss"), int | float)]
    text = f"{stage.name}: {len(stage.curves)} log records"
    if steps:
        text += f", steps {min(steps)}–{max(steps)}"
    if len(losses) >= 2:
        text += f", loss {losses[0]:.3f} → {losses[-1]:.3f}"
    return text


Model = tuple[str, EvalData, str | None]
"""(label, evaluation, label of the model it started from or None)."""


def evaluated_models(runs: Sequence[RunData]) -> list[Model]:
    out: list[Model] = []
    for run in runs:
        prefix = _prefix(run, runs)
        inputs = {s.name: s.input for s in run.stages}
        for name, e in run.models():
            parent = inputs.get(name)
            out.append((prefix + name, e, prefix + parent if parent else None))
    return out


def eval_section(runs: Sequence[RunData]) -> Section:
    """Scores with 95% intervals; Δ vs base and vs the input, marked * when a paired test says it is not noise."""
    models = evaluated_models(runs)
    tasks = list(dict.fromkeys(t for run in runs for t in run.eval_tasks))
    by_label = {label: e for label, e, _ in models}
    table = Table(["model", *tasks], [])
    notes = set()
    for label, e, parent in models:
        base_label = label.rsplit("/", 1)[0] + "/" + BASE if "/" in label else BASE
        cells = []
        for task in tasks:
            if task not in e.scores:
                cells.append("–")
                continue
            text = f"{e.scores[task]:.3f}"
            if task in e.intervals:
                low, high = e.intervals[task]
                text += f" [{low:.2f}, {high:.2f}]"
            for versus, other_label in (("base", base_label), ("input", parent)):
                other = by_label.get(other_label or "")
                if other is None or other is e or task not in other.scores or (versus == "input" and other_label == base_label):
                    continue
                test = paired(other, e, task)
                mark = ""
                if test is not None and test.p_value is not None:
                    mark = "*" if test.significant else ""
                    notes.add(str(test.test))
                text += f"\nΔ vs {versus} {e.scores[task] - other.scores[task]:+.3f}{mark}"
            cells.append(text)
        table.rows.append([label, *cells])
    legend = "Score [95% interval]. Δ marked * differs from zero at p < 0.05 in a paired test on the same documents"
    legend += f" ({', '.join(sorted(notes))})." if notes else " (needs per-document samples; none found)."
    png = plots.scores_png([(label, e.scores, e.intervals) for label, e, _ in models], tasks)
    images = {"scores.png": png} if png else {}
    tag, link = _img("scores.png", "scores per task with 95% intervals") if png else ("", "")
    return Section("eval", "Evaluation", table.html("eval") + f"<p class='legend'>{html.escape(legend)}</p>" + tag,
                   table.md() + f"\n{legend}\n\n" + link, images)


def objectives_section(runs: Sequence[RunData]) -> Section | None:
    """Each stage's held-out objective before and after it, with the change's 95% band, when measured."""
    table = Table(["stage", "metric", "before", "after", "change", "± 95%", "verdict", "rows"], [], {2, 3, 4, 5, 7})
    notes = []
    for run in runs:
        for s in run.stages:
            obj = s.objective
            if not obj:
                continue
            lower = set(obj.get("lower_is_better") or ())
            for metric, before in (obj.get("before") or {}).items():
                after = (obj.get("after") or {}).get(metric)
                if not isinstance(before, int | float) or not isinstance(after, int | float):
                    continue
                change = after - before
                stderr = (obj.get("change_stderr") or {}).get(metric)
                band = 1.96 * stderr if isinstance(stderr, int | float) else None
                if band is not None and abs(change) <= band:
                    verdict = "within noise"
                elif change == 0:
                    verdict = "unchanged"
                else:
                    verdict = "better" if (change < 0) == (metric in lower) else "worse"
                table.rows.append([f"{_prefix(run, runs)}{s.name}", metric, _num(before, 4), _num(after, 4),
                                   f"{change:+.4f}", _num(band, 4), verdict, str(obj.get("rows", "-"))])
            notes += [f"{s.name}: {n}" for n in obj.get("notes") or []]
    if not table.rows:
        return None
    note_html = "".join(f"<p class='legend'>{html.escape(n)}</p>" for n in notes)
    return Section("objectives", "Held-out objectives", table.html("objectives") + note_html,
                   table.md() + "".join(f"\n{n}\n" for n in notes))


def answers_section(runs: Sequence[RunData], *, per_task: int = 4) -> Section:
    """For a few eval documents: the prompt, the target, and each model's answer with its score."""
    models = [(label, e) for label, e, _ in evaluated_models(runs)]
    docs = side_by_side(models, per_task=per_task)
    if not docs:
        text = "No per-document eval samples were found (samples/<task>.jsonl beside eval.json)."
        return Section("answers", "Answers side by side", f"<p class='empty'>{html.escape(text)}</p>", text + "\n")
    html_parts, md_parts = [], []
    for doc in docs:
        rows = "".join(
            f"<tr class='answer'><th>{html.escape(a.model)}</th><td><pre>{html.escape(a.response)}</pre></td>"
            f"<td class='num score-{_score_class(a.score)}'>{_num(a.score, 2)}</td></tr>"
            for a in doc.answers
        )
        changed = " <span class='changed'>answers differ</span>" if doc.differ else ""
        html_parts.append(
            f"<div class='doc'><h4>{html.escape(doc.task)} #{html.escape(str(doc.doc_id))}{changed}</h4>"
            f"<details><summary>prompt</summary><pre>{html.escape(doc.prompt)}</pre></details>"
            f"<p>target: <code>{html.escape(doc.target)}</code></p>"
            f"<table class='answers'><thead><tr><th>model</th><th>answer</th><th>score</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
        table = Table(["model", "answer", "score"], [[a.model, a.response, _num(a.score, 2)] for a in doc.answers], {2})
        md_parts.append(f"#### {doc.task} #{doc.doc_id}\n\ntarget: `{doc.target}`\n\n" + table.md())
    return Section("answers", "Answers side by side", "".join(html_parts), "\n".join(md_parts))


def _score_class(score: float | None) -> str:
    return "none" if score is None else ("good" if score >= 0.5 else "bad")


def _serve_command(entry: dict[str, Any]) -> str:
    for key in ("command_line", "serve", "run"):
        if isinstance(entry.get(key), str):
            return entry[key]
    path = entry.get("path", "")
    return {
        "merged": f"vllm serve {path}",
        "peft": f"PeftModel.from_pretrained(base_model, {path!r})",
    }.get(entry.get("format", ""), "-")


def exports_section(runs: Sequence[RunData]) -> Section:
    """Each stage's exported artifacts, what was checked, and the command that serves them."""
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
                table.rows.append([f"{_prefix(run, runs)}{s.name}", entry.get("format", "?"), str(entry.get("path", "")),
                                   str(checks), _serve_command(entry)])
                if isinstance(entry.get("serving"), str):
                    serving.append(entry["serving"])
    if not table.rows:
        return Section("exports", "Exports", "<p>No exports yet.</p>", "No exports yet.\n")
    extra_html = "".join(f"<pre class='serving'>{html.escape(text)}</pre>" for text in serving)
    return Section("exports", "Exports", table.html("exports") + extra_html,
                   table.md() + "".join(f"\n```\n{text}\n```\n" for text in serving))


def run_sections(runs: Sequence[RunData], *, cached: set[str] | None = None) -> list[Section]:
    """Every section of the page, in reading order."""
    builders: list[tuple[str, Callable[[], Section | None]]] = [
        ("Stages", lambda: stage_graph(runs, cached)), ("Data", lambda: data_section(runs)),
        ("Training curves", lambda: curves_section(runs)), ("Evaluation", lambda: eval_section(runs)),
        ("Held-out objectives", lambda: objectives_section(runs)),
        ("Answers side by side", lambda: answers_section(runs)), ("Exports", lambda: exports_section(runs)),
    ]
    sections = []
    for title, build in builders:
        try:
            section = build()
        except Exception as exc:  # a file in an unexpected shape costs one section, not the report (or the run)
            text = f"This section could not be built: {type(exc).__name__}: {exc}"
            section = Section(title.lower().replace(" ", "-"), title, f"<p class='error'>{html.escape(text)}</p>",
                              text + "\n")
        if section is not None:
            sections.append(section)
    return sections
