"""The report's plots, drawn with matplotlib into PNG bytes (embedded in report.html, linked from report.md)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from posttrain.stagekit.display import Panel

Lines = dict[str, tuple[list[float], list[float]]]
"""Metric key → (steps, values)."""


def _matches(pattern: str, key: str) -> bool:
    if "*" not in pattern:
        return key == pattern
    head, tail = pattern.split("*", 1)
    return key.startswith(head) and key.endswith(tail) and "/" not in key[len(head): len(key) - len(tail)]


def series(records: Sequence[dict[str, Any]], pattern: str) -> Lines:
    """Key → (steps, values) for every key of the records matching `pattern`, finite numbers only."""
    out: Lines = {}
    for record in records:
        step = record.get("step")
        for key, value in record.items():
            if not _matches(pattern, key) or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if step is None or not math.isfinite(value):
                continue
            steps, values = out.setdefault(key, ([], []))
            steps.append(float(step))
            values.append(float(value))
    return out


def stage_panels(panels: Sequence[Panel], records: Sequence[dict[str, Any]]) -> list[tuple[str, Lines]]:
    """The panels of a stage's curves that have data: (title, {key: (steps, values)})."""
    drawn = []
    for panel in panels:
        lines: Lines = {}
        for pattern in panel.keys:
            lines.update(series(records, pattern))
        if lines:
            drawn.append((panel.title, lines))
    return drawn


def absent_notes(panels: Sequence[Panel], records: Sequence[dict[str, Any]]) -> list[str]:
    """What a stage that logged curves says about each declared panel it has no data for."""
    if not records:
        return []
    return [p.when_absent for p in panels if p.when_absent and not any(series(records, k) for k in p.keys)]


def _figure(n_panels: int, *, width: float = 3.4, height: float = 2.4):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _png(fig: Any) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def curves_png(
    stage_name: str, stage_type: str, panels: Sequence[Panel], records: Sequence[dict[str, Any]]
) -> bytes | None:
    """One small panel per signal against the training step; None when the stage logged nothing."""
    drawn = stage_panels(panels, records)
    if not drawn:
        return None
    fig, axes = _figure(len(drawn))
    for ax, (title, lines) in zip(axes, drawn, strict=False):
        for key, (steps, values) in lines.items():
            ax.plot(steps, values, marker="o" if len(steps) < 12 else None, markersize=3, label=key)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{stage_name} ({stage_type})", fontsize=10)
    return _png(fig)


def scores_png(models: Sequence[tuple[str, dict[str, float], dict[str, tuple[float, float]]]], tasks: Sequence[str]) -> bytes | None:
    """Grouped bars: one group per task, one bar per model, 95% intervals as error bars when known."""
    if not tasks or not models:
        return None
    fig, (ax,) = _figure(1, width=max(4.0, 1.2 * len(tasks) * max(1, len(models)) ** 0.5 + 2), height=2.8)
    width = 0.8 / len(models)
    for i, (label, scores, intervals) in enumerate(models):
        xs, ys, err_low, err_high = [], [], [], []
        for j, task in enumerate(tasks):
            if task not in scores:
                continue
            score = scores[task]
            low, high = intervals.get(task, (score, score))
            xs.append(j + (i - (len(models) - 1) / 2) * width)
            ys.append(score)
            err_low.append(max(0.0, score - low))
            err_high.append(max(0.0, high - score))
        ax.bar(xs, ys, width=width, label=label, yerr=[err_low, err_high], capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_xticks(range(len(tasks)), list(tasks), fontsize=8)
    ax.set_ylabel("score", fontsize=8)
    ax.tick_params(labelsize=7)
    top = max([1.0, *(high for _, scores, iv in models for t, (_, high) in iv.items() if t in scores)])
    ax.set_ylim(0, top * 1.3)  # headroom for the legend above the bars
    ax.legend(fontsize=7, ncols=min(len(models), 4), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)



@dataclass
class QualityPanel:
    """One task of one stage: the merged model (the reference) and each exported artifact, score against size."""

    task: str
    reference: float | None
    """The merged model's score in transformers (None when the stage was not evaluated)."""
    reference_ci: tuple[float, float] | None
    reference_mb: float | None
    """Size on disk of the merged export; None draws the reference as a line only."""
    points: list[tuple[str, float, float, tuple[float, float] | None]] = field(default_factory=list)
    """(artifact, size on disk in MB, score, its 95% interval or None)."""


def quality_size_png(title: str, panels: Sequence[QualityPanel]) -> bytes | None:
    """Score against size on disk, one panel per task: each artifact a point with its 95% interval, the merged
    model a dashed line at its score with its interval as a band (and a square where its size is known).
    None when no panel has an artifact to draw."""
    panels = [p for p in panels if p.points]
    if not panels:
        return None
    fig, axes = _figure(len(panels), width=4.2, height=3.0)
    for ax, panel in zip(axes, panels, strict=False):
        if panel.reference is not None:
            ax.axhline(panel.reference, color="#555", linestyle="--", linewidth=1, label="merged (transformers)")
            if panel.reference_ci is not None:
                ax.axhspan(*panel.reference_ci, color="#999", alpha=0.15, linewidth=0)
        drawn = list(panel.points)
        if panel.reference is not None and panel.reference_mb is not None:
            drawn.append(("merged", panel.reference_mb, panel.reference, panel.reference_ci))
        for label, size, score, ci in drawn:
            low, high = ci if ci is not None else (score, score)
            reference = label == "merged" and (size, score) == (panel.reference_mb, panel.reference)
            ax.errorbar([size], [score], yerr=[[max(0.0, score - low)], [max(0.0, high - score)]],
                        fmt="s" if reference else "o", color="#555" if reference else None, capsize=3, markersize=5)
            ax.annotate(label, (size, score), textcoords="offset points", xytext=(5, 4), fontsize=7)
        sizes = [size for _, size, _, _ in drawn]
        if min(sizes) > 0 and max(sizes) / min(sizes) > 20:  # an f16 file beside a 4-bit one of a large model
            ax.set_xscale("log")
        else:
            pad = (max(sizes) - min(sizes)) * 0.25 or max(max(sizes) * 0.25, 0.01)
            ax.set_xlim(max(0.0, min(sizes) - pad), max(sizes) + pad)  # room for the labels beside the points
        ax.set_title(panel.task, fontsize=9)
        ax.set_xlabel("size on disk (MB)", fontsize=8)
        ax.set_ylabel("score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.margins(y=0.12)  # the labels above the highest point stay inside the panel
        if panel.reference is not None:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    return _png(fig)
