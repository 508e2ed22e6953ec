"""Answers side by side, and paired significance, from the per-document samples of each evaluated model.

Samples are `samples/<task>.jsonl` beside each eval.json, one line per document:
`doc_id`, `prompt`, `target`, `response` (the answer after the task's filter) and
`metrics` (metric name → that document's value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posttrain.evaluation.stats import DeltaTest, paired_test
from posttrain.report.collect import EvalData


@dataclass
class Answer:
    model: str
    response: str
    score: float | None


@dataclass
class DocumentAnswers:
    task: str
    doc_id: Any
    prompt: str
    target: str
    answers: list[Answer] = field(default_factory=list)

    @property
    def differ(self) -> bool:
        """Whether the models disagree: different answers or different scores."""
        return len({(a.response, a.score) for a in self.answers}) > 1

    @property
    def changes(self) -> int:
        """How often the answer or score changes from one model to the next, in pipeline order."""
        pairs = zip(self.answers, self.answers[1:], strict=False)
        return sum((a.response, a.score) != (b.response, b.score) for a, b in pairs)


def doc_score(row: dict[str, Any], metric: str | None) -> float | None:
    """The document's value of the task's headline metric (else its first scalar metric)."""
    metrics = row.get("metrics") or {}
    value = metrics.get(metric) if metric else None
    if value is None:
        value = next((v for v in metrics.values() if isinstance(v, int | float) and not isinstance(v, bool)), None)
    return float(value) if isinstance(value, int | float) else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) else str(value)


def _target(row: dict[str, Any]) -> str:
    """The target as a reader knows it: multiple choice stores the right choice's index, show its text."""
    target, choices = row.get("target"), row.get("choices")
    if isinstance(choices, list) and str(target).isdigit() and int(str(target)) < len(choices):
        return f"{choices[int(str(target))]} (choice {target})"
    return _text(target)


def side_by_side(models: Sequence[tuple[str, EvalData]], *, per_task: int = 4) -> list[DocumentAnswers]:
    """For each task, up to `per_task` documents every model answered, those that changed most first."""
    out: list[DocumentAnswers] = []
    tasks = list(dict.fromkeys(t for _, e in models for t in e.samples))
    for task in tasks:
        by_model = {name: {str(r.get("doc_id")): r for r in e.samples.get(task, [])} for name, e in models}
        present = [name for name in by_model if by_model[name]]
        if not present:
            continue
        common = [d for d in by_model[present[0]] if all(d in by_model[m] for m in present)]
        docs = []
        for doc in common:
            first = by_model[present[0]][doc]
            entry = DocumentAnswers(task, first.get("doc_id"), _text(first.get("prompt")), _target(first))
            for name, e in models:
                if name in present:
                    row = by_model[name][doc]
                    entry.answers.append(Answer(name, _text(row.get("response")), doc_score(row, e.metric.get(task))))
            docs.append(entry)
        docs.sort(key=lambda d: -d.changes)  # stable: documents that changed most along the chain come first
        out += docs[:per_task]
    return out


def per_doc(e: EvalData, task: str) -> dict[str, float]:
    """doc_id → the headline metric's value, for the documents that have one."""
    out = {}
    for row in e.samples.get(task, []):
        score = doc_score(row, e.metric.get(task))
        if score is not None:
            out[str(row.get("doc_id"))] = score
    return out


def paired(a: EvalData, b: EvalData, task: str) -> DeltaTest | None:
    """b against a on `task`, paired by document (the evaluation's own test: McNemar for 0/1 scores, else a
    paired bootstrap); None when the two share no scored document."""
    va, vb = per_doc(a, task), per_doc(b, task)
    if not any(d in vb for d in va):
        return None
    return paired_test(va, vb)
