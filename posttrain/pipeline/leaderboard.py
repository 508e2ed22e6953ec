"""Land a run's scores on the leaderboards: `leaderboard.md` in the run dir and the shared SQLite board."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from posttrain.evaluation.leaderboard import StageScores, compute_cells, markdown_table, record

LEADERBOARD_DB = "leaderboard.sqlite"


def stage_rows(report: Any) -> list[StageScores]:
    """Base first, then every evaluated stage, each knowing which model it started from."""
    rows = [StageScores("base", report.base.scores)]
    rows += [StageScores(s.name, s.scores, {"input": s.input, **_teacher(s.metrics)}) for s in report.stages if s.scores]
    return rows


def _teacher(metrics: dict[str, Any]) -> dict[str, Any]:
    # A distill stage names its teacher's row, or carries the scores of a teacher outside the pipeline.
    if "teacher_stage" in metrics:
        return {"teacher": metrics["teacher_stage"]}
    return {"teacher_scores": metrics["teacher_scores"]} if "teacher_scores" in metrics else {}


DISTILL_COLUMNS = ("stage", "teacher", "params teacher → student", "tokens/s teacher → student", "mean retention")


def distill_summary(report: Any) -> list[tuple[str, ...]]:
    """One row per distill stage: what the student costs and keeps (retention = student / teacher score)."""
    rows = stage_rows(report)
    retention = {
        row.label: [c.retention for c in cells.values() if c.retention is not None]
        for row, cells in zip(rows, compute_cells(rows), strict=True)
    }
    out = []
    for stage in report.stages:
        m = stage.metrics
        if "student_params" not in m:
            continue
        kept = retention.get(stage.name) or []
        out.append((
            stage.name,
            str(m.get("teacher", "")),
            f"{m['teacher_params'] / 1e6:.1f}M → {m['student_params'] / 1e6:.1f}M (×{m['param_ratio']:.2f})",
            f"{m['teacher_tokens_per_s']:.0f} → {m['student_tokens_per_s']:.0f} (×{m['speedup']:.2f})",
            f"{sum(kept) / len(kept):.2f}" if kept else "–",
        ))
    return out


def _distill_markdown(summary: list[tuple[str, ...]]) -> str:
    if not summary:
        return ""
    lines = ["## distillation", "", "| " + " | ".join(DISTILL_COLUMNS) + " |", "|---" * len(DISTILL_COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in summary]
    return "\n".join(lines) + "\n"


def publish_leaderboard(report: Any, *, recipe_name: str, model_ref: str, db_path: Path) -> None:
    rows = stage_rows(report)
    distill = _distill_markdown(distill_summary(report))
    (report.run_dir / "leaderboard.md").write_text(f"# {recipe_name}\n\n{markdown_table(rows)}\n{distill}")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    outcomes = {"base": report.base, **{s.name: s for s in report.stages}}
    for row in rows:
        if row.scores:
            outcome = outcomes[row.label]
            record(db_path, recipe_name, row.label, model_ref, row.scores, outcome.fingerprint, now)
