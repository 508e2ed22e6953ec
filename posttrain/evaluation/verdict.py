"""An exported artifact against the model it came from: per task, the paired test and a verdict in plain words.

Both were scored on the same documents (the artifact in its engine, the
stage's merged model in transformers), so the test pairs them document by
document (stats.paired_test: McNemar for 0/1 metrics, a paired bootstrap
otherwise). The delta's interval is the normal interval of the mean of the
per-document differences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from posttrain.evaluation.record import EvalEvidence
from posttrain.evaluation.stats import Z95, paired_test


def delta_interval(reference: dict[str, float], artifact: dict[str, float]) -> tuple[float, float] | None:
    """95% interval of mean(artifact - reference) over the documents both have; None below two documents."""
    common = [k for k in reference if k in artifact]
    if len(common) < 2:
        return None
    diff = np.asarray([artifact[k] - reference[k] for k in common], dtype=float)
    half = Z95 * float(np.std(diff, ddof=1)) / math.sqrt(diff.size)
    mean = float(diff.mean())
    return (mean - half, mean + half)


def verdict(name: str, delta: float | None, p_value: float | None, significant: bool) -> str:
    """`q4_k_m: −0.03, within noise`, `q4_k_m: loses 0.08, significant (p=0.01)`, `gains 0.05, significant (...)`."""
    if delta is None or math.isnan(delta):
        return f"{name}: no score to compare"
    if p_value is None:
        return f"{name}: {_signed(delta)}, no paired test (no per-document results)"
    if not significant:
        return f"{name}: {_signed(delta)}, within noise"
    word = "loses" if delta < 0 else "gains"
    return f"{name}: {word} {abs(delta):.2f}, significant (p{_p(p_value)})"


def _signed(delta: float) -> str:
    return f"−{abs(delta):.2f}" if delta < 0 else f"+{delta:.2f}"


def _p(p: float) -> str:
    return f"={p:.2g}" if p >= 0.001 else "<0.001"


def compare_tasks(name: str, artifact: EvalEvidence, reference: EvalEvidence | None) -> dict[str, dict[str, Any]]:
    """Per task the artifact scored: its stats, the reference's score, the paired delta, its interval and verdict."""
    out: dict[str, dict[str, Any]] = {}
    for task, stats in artifact.stats.items():
        ref_stats = reference.stats.get(task) if reference else None
        mine = artifact.per_doc.get(task)
        theirs = reference.per_doc.get(task) if reference else None
        entry: dict[str, Any] = {
            "metric": stats.metric, "score": stats.score, "stderr": stats.stderr,
            "ci95": list(stats.ci95) if stats.ci95 else None, "n": stats.n,
            "reference_score": ref_stats.score if ref_stats else None,
            "delta": None, "delta_ci95": None, "p_value": None, "significant": False,
        }
        if ref_stats is not None:
            entry["delta"] = stats.score - ref_stats.score
        if mine is not None and theirs is not None:
            test = paired_test(theirs, mine)
            interval = delta_interval(theirs, mine)
            entry.update(delta=test.delta, p_value=test.p_value, significant=test.significant,
                         delta_ci95=list(interval) if interval else None, test=test.test, n_paired=test.n_paired)
        entry["verdict"] = verdict(name, entry["delta"], entry["p_value"], entry["significant"])
        out[task] = entry
    return out
