"""Read an evaluation back from its folder: eval.json's stats and the per-document results beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    return evidence
