"""The report's sections, each built once as a `Section` holding both its HTML and its markdown.

A section reads `RunData` (report/collect.py) and never a file, so the run report
(one run) and the compare page (two runs) are built from the same functions.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from posttrain.evaluation.stats import gain_kept
from posttrain.report import plots
from posttrain.report.answers import paired, per_doc, side_by_side
from posttrain.report.blocks import Section, Table, img, num, prefix
from posttrain.report.collect import BASE, EvalData, RunData
from posttrain.report.diagnosis import diagnoses, objective_changes
from posttrain.report.exports import exports_section
from posttrain.report.graph import stage_graph

__all__ = ["Section", "Table", "run_sections"]


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
            name = f"{prefix(run, runs)}{ds.name}"
            kind = ds.report.get("kind", "?")
            summary = f"kind {kind}; {malformed} malformed source rows (rejects.jsonl)"
            html_parts.append(f"<h3>{html.escape(name)}</h3><p>{html.escape(summary)}</p>" + table.html("data"))
            md_parts.append(f"### {name}\n\n{summary}\n\n{table.md()}")
            if ds.lengths_png is not None:
                image = f"lengths-{run.name}-{ds.name}.png"
                images[image] = ds.lengths_png.read_bytes()
                tag, link = img(image, f"token lengths of {name}")
                html_parts.append(f"<div class='lengths'>{tag}</div>")
                md_parts.append("\n" + link)
    sampled = _sampled_pairs(runs)
    if sampled is not None:
        html_parts.append(f"<h3>On-policy pairs</h3><p>{html.escape(_SAMPLED)}</p>" + sampled.html("pairs"))
        md_parts.append(f"### On-policy pairs\n\n{_SAMPLED}\n\n{sampled.md()}")
    if not html_parts:
        html_parts, md_parts = ["<p>No curated datasets in this run.</p>"], ["No curated datasets in this run.\n"]
    return Section("data", "Data", "".join(html_parts), "\n".join(md_parts), images)


_SAMPLED = ("Pairs a stage built from its prompts: samples of its input model ranked by its rewards, best vs worst "
            "(pairs.jsonl in the stage folder); prompts whose samples tied or had no applicable reward are skipped.")


def _sampled_pairs(runs: Sequence[RunData]) -> Table | None:
    """Per stage with `on_policy` pairs: prompts in, pairs out, and why the rest gave none (stage metrics)."""
    table = Table(["stage", "prompts from", "prompts", "pairs", "ties skipped", "unscored skipped"], [], {2, 3, 4, 5})
    for run in runs:
        for s in run.stages:
            if "pairs_pairs" in s.metrics:
                table.rows.append([f"{prefix(run, runs)}{s.name}", s.data or "-", *(
                    str(s.metrics.get(f"pairs_{k}", "-")) for k in ("prompts", "pairs", "ties", "unscored"))])
    return table if table.rows else None


def curves_section(runs: Sequence[RunData]) -> Section:
    """One figure per trained stage: loss, learning rate, grad norm and the panels its stage type declared; then,
    per SFT stage, one training example with the tokens its loss learned highlighted."""
    html_parts, md_parts, images = [], [], {}
    for run in runs:
        for s in run.stages:
            png = plots.curves_png(f"{prefix(run, runs)}{s.name}", s.type, s.panels, s.curves)
            if png is None:
                continue
            image = f"curves-{run.name}-{s.name}.png"
            images[image] = png
            tag, link = img(image, f"training curves of {prefix(run, runs)}{s.name}")
            html_parts.append(f"<figure>{tag}<figcaption>{html.escape(_curve_caption(s))}</figcaption></figure>")
            md_parts.append(link + f"\n{_curve_caption(s)}\n")
    for run in runs:
        for s in run.stages:
            if s.loss_mask:
                shown = loss_mask_example(f"{prefix(run, runs)}{s.name}", s.loss_mask)
                html_parts.append(shown[0])
                md_parts.append(shown[1])
    if not html_parts:
        html_parts, md_parts = ["<p>No stage logged training metrics.</p>"], ["No stage logged training metrics.\n"]
    return Section("curves", "Training curves", "<div class='figures'>" + "".join(html_parts) + "</div>",
                   "\n".join(md_parts), images)


def loss_mask_example(label: str, record: dict[str, Any]) -> tuple[str, str]:
    """One training example of a stage as its loss saw it, learned tokens highlighted: (HTML, markdown).

    The markdown marks learned text with ⟦ ⟧, since a code block can hold no highlight."""
    segments = [seg for seg in record.get("segments") or [] if isinstance(seg, dict)]
    caption = (f"{label}: row {record.get('row', 1)} of dataset {record.get('dataset', '?')!s} as training saw it, "
               f"{record.get('learned_tokens', '?')} of {record.get('tokens', '?')} tokens learned (highlighted); "
               f"end of turn {record.get('end_of_turn')!s}")
    body = "".join(
        f"<mark>{html.escape(str(seg.get('text', '')))}</mark>" if seg.get("learned") else
        html.escape(str(seg.get("text", ""))) for seg in segments)
    text = "".join(f"⟦{seg.get('text', '')}⟧" if seg.get("learned") else str(seg.get("text", "")) for seg in segments)
    return (f"<figure class='loss-mask'><pre class='loss-mask'>{body}</pre>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>",
            f"{caption}\n\n```text\n{text}\n```\n")


def _curve_caption(stage: Any) -> str:
    steps = [r.get("step") for r in stage.curves if isinstance(r.get("step"), int)]
    losses = [r["loss"] for r in stage.curves if isinstance(r.get("loss"), int | float)]
    text = f"{stage.name}: {len(stage.curves)} log records"
    if steps:
        text += f", steps {min(steps)}–{max(steps)}"
    if len(losses) >= 2:
        text += f", loss {losses[0]:.3f} → {losses[-1]:.3f}"
    drawn = [title for title, _ in plots.stage_panels(stage.panels, stage.curves)]
    if drawn:
        text += f"; panels: {', '.join(drawn)}"  # the figure's titles, for a reader of report.md too
    return "; ".join([text, *plots.absent_notes(stage.panels, stage.curves)])


Model = tuple[str, EvalData, str | None]
"""(label, evaluation, label of the model it started from or None)."""


def evaluated_models(runs: Sequence[RunData]) -> list[Model]:
    out: list[Model] = []
    for run in runs:
        label = prefix(run, runs)
        inputs = {s.name: s.input for s in run.stages}
        for name, e in run.models():
            parent = inputs.get(name)
            out.append((label + name, e, label + parent if parent else None))
    return out


def eval_section(runs: Sequence[RunData]) -> Section:
    """Scores with 95% intervals; Δ vs base and vs the input, marked * when a paired test says it is not noise."""
    models = evaluated_models(runs)
    tasks = list(dict.fromkeys(t for run in runs for t in run.eval_tasks))
    by_label = {label: e for label, e, _ in models}
    compared = {prefix(run, runs) + s.name: prefix(run, runs) + s.compared_with
                for run in runs for s in run.stages if s.compared_with}
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
            text += _gain_kept_line(e, by_label.get(compared.get(label, "")), by_label.get(base_label), task)
            cells.append(text)
        table.rows.append([label, *cells])
    legend = "Score [95% interval]. Δ marked * differs from zero at p < 0.05 in a paired test on the same documents"
    legend += f" ({', '.join(sorted(notes))})." if notes else " (needs per-document samples; none found)."
    png = plots.scores_png([(label, e.scores, e.intervals) for label, e, _ in models], tasks)
    images = {"scores.png": png} if png else {}
    tag, link = img("scores.png", "scores per task with 95% intervals") if png else ("", "")
    why_html, why_md = _why_not(runs)
    return Section("eval", "Evaluation",
                   table.html("eval") + f"<p class='legend'>{html.escape(legend)}</p>" + tag + why_html,
                   table.md() + f"\n{legend}\n\n" + link + why_md, images)


def _gain_kept_line(model: EvalData, reference: EvalData | None, base: EvalData | None, task: str) -> str:
    """"keeps 53% of the teacher's gain [31%, 78%]" for a model compared with another (a student), when all three
    were scored on the same documents."""
    if reference is None or base is None or any(task not in e.scores for e in (model, reference, base)):
        return ""
    kept = gain_kept(per_doc(base, task), per_doc(reference, task), per_doc(model, task))
    if kept is None:
        return ""
    if kept.low is None or kept.high is None:
        return f"\nkeeps {kept.share:.0%} of the teacher's gain (its gain within noise)"
    return f"\nkeeps {kept.share:.0%} of the teacher's gain [{kept.low:.0%}, {kept.high:.0%}]"


def _why_not(runs: Sequence[RunData]) -> tuple[str, str]:
    """The stages that did not move a benchmark, each with what its objective and logs say (report/diagnosis.py)."""
    lines = [prefix(run, runs) + d.sentence() for run in runs for d in diagnoses(run)]
    if not lines:
        return "", ""
    title = "Stages that did not move their benchmark, and why"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (f"<h3 id='why-not'>{title}</h3><ul class='why-not'>{items}</ul>",
            f"\n\n### {title}\n\n" + "".join(f"- {line}\n" for line in lines))


def objectives_section(runs: Sequence[RunData]) -> Section:
    """Each stage's held-out objective before and after it, with the change's 95% band, when measured."""
    table = Table(["stage", "metric", "before", "after", "change", "± 95%", "verdict", "rows"], [], {2, 3, 4, 5, 7})
    notes = []
    for run in runs:
        for s in run.stages:
            obj = s.objective
            if not obj:
                continue
            for o in objective_changes(obj):
                table.rows.append([f"{prefix(run, runs)}{s.name}", o.metric, num(o.before, 4), num(o.after, 4),
                                   f"{o.after - o.before:+.4f}", num(o.band, 4), o.verdict, str(obj.get("rows", "-"))])
            notes += [f"{s.name}: {n}" for n in obj.get("notes") or []]
    if not table.rows:
        text = "No stage measured a held-out objective (objective.json beside stage.json)."
        return Section("objectives", "Held-out objectives", f"<p class='empty'>{html.escape(text)}</p>", text + "\n")
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
            f"<tr class='answer'><th>{html.escape(a.model)}</th><td><pre>{html.escape(_shown(a.response))}</pre></td>"
            f"<td class='num score-{_score_class(a.score)}'>{num(a.score, 2)}</td></tr>"
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
        table = Table(["model", "answer", "score"], [[a.model, _shown(a.response), num(a.score, 2)] for a in doc.answers], {2})
        md_parts.append(f"#### {doc.task} #{doc.doc_id}\n\ntarget: `{doc.target}`\n\n" + table.md())
    return Section("answers", "Answers side by side", "".join(html_parts), "\n".join(md_parts))


def _shown(response: str) -> str:
    return response if response.strip() else "(empty answer)"


def _score_class(score: float | None) -> str:
    return "none" if score is None else ("good" if score >= 0.5 else "bad")


def run_sections(runs: Sequence[RunData]) -> list[Section]:
    """Every section of the page, in reading order."""
    builders: list[tuple[str, Callable[[], Section | None]]] = [
        ("Stages", lambda: stage_graph(runs)), ("Data", lambda: data_section(runs)),
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
