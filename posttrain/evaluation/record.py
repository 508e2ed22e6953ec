"""Read an evaluation back from its folder: eval.json's stats and the per-document results beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.evaluation.samples import per_doc_values, read_rows
from posttrain.evaluation.stats import TaskStats
from posttrain.run_layout import RunDir
from posttrain.rundir import read_json


@dataclass
class EvalEvidence:
    """What a paired test needs of one evaluated model: per task, its stats and per-document values."""

    stats: dict[str, TaskStats] = field(default_factory=dict)
    per_doc: dict[str, dict[str, float] | None] = field(default_factory=dict)
    """Task → `task:doc_id` → value of the headline metric; None when the metric has no per-document value."""
    protocol: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task → how it was scored (`harness.protocols`); empty for evaluations recorded before protocols were."""


def load_evidence(folder: Path) -> EvalEvidence | None:
    """The evidence in `folder` (eval.json + samples/), or None for an eval written before stats were kept."""
    record = read_json(Path(folder) / RunDir.EVAL)
    if not record or "stats" not in record:
        return None
    evidence = EvalEvidence()
    for task, raw in record["stats"].items():
        stats = TaskStats.from_json(raw)
        evidence.stats[task] = stats
        samples = Path(folder) / record.get("samples", {}).get(task, f"samples/{task}.jsonl")
        evidence.per_doc[task] = per_doc_values(read_rows(samples), stats.metric) if samples.is_file() else None
    protocol = (record.get("results") or {}).get("protocol")
    evidence.protocol = protocol if isinstance(protocol, dict) else {}
    return evidence


PROTOCOL_WORDS = {
    "task_hash": "task definition", "num_fewshot": "shots", "limit": "documents (limit)",
    "apply_chat_template": "chat template on/off", "chat_template_hash": "chat template",
    "generation_kwargs": "generation settings", "filters": "answer filters", "metric": "metric",
    "lm_eval_version": "lm-eval version", "seed": "seed",
}


def protocol_difference(a: EvalEvidence | None, b: EvalEvidence | None, task: str) -> str | None:
    """Why two evaluations of `task` cannot be compared ("documents (limit) 100 vs 50"), or None when their
    protocols agree or one of them predates recorded protocols (nothing to go on)."""
    return protocols_differ(a.protocol.get(task) if a else None, b.protocol.get(task) if b else None)


def protocols_differ(mine: Any, theirs: Any) -> str | None:
    """Why two recorded protocols of one task cannot be compared, or None when they agree or one is unknown."""
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return None
    differ = [key for key in PROTOCOL_WORDS if key in mine and key in theirs and mine[key] != theirs[key]]
    if not differ:
        return None
    shown = [f"{PROTOCOL_WORDS[k]} {_short(mine[k])} vs {_short(theirs[k])}" for k in differ]
    return "protocols differ: " + "; ".join(shown)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
