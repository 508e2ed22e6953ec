"""Per-document results, kept beside eval.json as `samples/<task>.jsonl`, one line per document.

A line holds what a later look needs without rerunning the model: which
document (`task`, `doc_id`, `doc_hash`), the prompt as the model saw it, the
`target`, the model's answer (`response`: the generated text after the task's
filter, or the chosen choice for multiple choice; `responses` by filter name
when a task has several; `raw_response`: the generation before filtering) and
every metric's value (`metrics`, keyed like eval.json's metrics:
`exact_match`, or `exact_match,strict-match` when a task filters answers
several ways). Paired tests read `metrics` back by document key `task:doc_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def metric_key(metric: str, filter_name: str) -> str:
    """lm-eval's `metric,filter`, with the default filter `none` left off."""
    return metric if filter_name == "none" else f"{metric},{filter_name}"


def _chosen(filtered: Any, choices: list[str] | None) -> tuple[str | None, list[float] | None]:
    """Multiple choice: the choice with the highest log-likelihood, and the log-likelihoods."""
    try:
        lls = [float(r[0] if isinstance(r, list | tuple) else r) for r in filtered]
    except (TypeError, ValueError, IndexError):
        return None, None
    if not lls or not choices or len(lls) != len(choices):
        return None, lls or None
    return choices[max(range(len(lls)), key=lls.__getitem__)], lls


def document_rows(task: str, raw: Iterable[dict[str, Any]], output_type: str) -> list[dict[str, Any]]:
    """lm-eval's logged samples of one task (one per document and filter) as one row per document."""
    rows: dict[Any, dict[str, Any]] = {}
    for s in raw:
        args = [a for a in s.get("arguments", []) if isinstance(a, list | tuple) and a]
        choices = [a[1] for a in args if isinstance(a[1], str)] if output_type == "multiple_choice" else None
        row = rows.setdefault(s.get("doc_id"), {
            "task": task,
            "doc_id": s.get("doc_id"),
            "doc_hash": s.get("doc_hash"),
            "prompt": args[0][0] if args else None,
            "choices": choices,
            "target": s.get("target"),
            "responses": {},
            "raw_response": _raw_generation(s) if output_type == "generate_until" else None,
            "metrics": {},
        })
        filter_name = str(s.get("filter", "none"))
        filtered = s.get("filtered_resps")
        if output_type == "multiple_choice":
            response, lls = _chosen(filtered or [], choices)
            row["loglikelihoods"] = lls
        else:
            response = filtered[0] if isinstance(filtered, list) and len(filtered) == 1 else filtered
        row["responses"][filter_name] = response
        row.setdefault("response", response)  # the first filter's: the one the headline metric uses by default
        for metric in s.get("metrics", []):
            row["metrics"][metric_key(metric, filter_name)] = _scalar(s.get(metric))
    return list(rows.values())


def _raw_generation(sample: dict[str, Any]) -> str | None:
    resps = sample.get("resps")
    try:
        first = resps[0]
        return first[0] if isinstance(first, list | tuple) else first
    except (TypeError, IndexError):
        return None


def _scalar(value: Any) -> float | None:
    """A per-document metric value as a float; corpus-level metrics log tuples or lists (no per-doc value)."""
    if isinstance(value, bool | int | float):
        return float(value)
    return None


def chance_level(rows: list[dict[str, Any]], output_type: str) -> float:
    """1 / number of choices averaged over documents for multiple choice; 0 for generation."""
    if output_type != "multiple_choice":
        return 0.0
    counts = [len(r["choices"]) for r in rows if r.get("choices")]
    return sum(1.0 / c for c in counts) / len(counts) if counts else 0.0


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def per_doc_values(rows: list[dict[str, Any]], metric: str) -> dict[str, float] | None:
    """`task:doc_id` → the metric's value per document, or None when a document lacks a scalar value."""
    out: dict[str, float] = {}
    for row in rows:
        value = row.get("metrics", {}).get(metric)
        if value is None:
            return None
        out[f"{row['task']}:{row['doc_id']}"] = float(value)
    return out
