"""Run reports people read: `report.html` (one self-contained file) and `report.md`, the board, compare pages.

`write_report(run_dir)` reads only the run directory's files, so it runs at the
end of every `posttrain run` and again any time with `posttrain report RUN`.
"""

from __future__ import annotations

from pathlib import Path

from posttrain.report.collect import read_run
from posttrain.report.compare import write_compare
from posttrain.report.graph import when_run
from posttrain.report.page import write_page
from posttrain.report.sections import run_sections
from posttrain.run_layout import RunDir

__all__ = ["write_compare", "write_report"]


def write_report(run_dir: Path) -> Path:
    """Write `report.html` and `report.md` into `run_dir` (what each stage's latest run did comes from stage.json)."""
    run = read_run(Path(run_dir))
    stages = ", ".join(s.name for s in run.stages) or "no stages yet"
    subtitle = f"run directory {run.run_dir} · stages: {stages}"
    if run.latest_run:
        subtitle += f" · latest run started {when_run(run.latest_run)}"
    html_path, _ = write_page(run.run_dir, RunDir.REPORT, f"posttrain run {run.name}", subtitle, run_sections([run]))
    return html_path
