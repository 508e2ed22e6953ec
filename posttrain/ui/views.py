"""The board, a run's report and the compare page: written by `posttrain.report` exactly as the CLI writes them.

The dashboard shows these files in a frame; it has no second rendering of their content.
Each page is written again when the files it reads are newer than it.
"""

from __future__ import annotations

from pathlib import Path

from posttrain.errors import UserError
from posttrain.leaderboard.store import LEADERBOARD_DB, top
from posttrain.report import write_compare, write_report
from posttrain.report.board import write_board_html
from posttrain.run_layout import RunDir
from posttrain.ui.runs import lock_holder


def _newest(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def _inputs(run: RunDir) -> list[Path]:
    """The files a run's report reads that change when a stage finishes."""
    return [run.recipe_file, *run.root.glob("*/stage.json"), *run.root.glob("*/eval.json"),
            *run.root.glob("*/objective.json")]


def board_page(runs_dir: Path) -> Path:
    """`RUNS_DIR/leaderboard.html`, as `posttrain leaderboard --format html` writes it."""
    return write_board_html(top(runs_dir / LEADERBOARD_DB), runs_dir)


def report_page(run_dir: Path) -> Path:
    """The run's `report.html`, written (again) when missing or older than its stages' files.

    While a `posttrain run` holds the run, the dashboard writes nothing into it (one writer per run):
    the existing report is shown, or the user is told it comes when the run finishes.
    """
    run = RunDir(run_dir)
    page = run.report_html
    if page.is_file() and page.stat().st_mtime >= _newest(_inputs(run)):
        return page
    if lock_holder(run):
        if page.is_file():
            return page
        raise UserError(f"run {run.root.name} is being worked on; its report is written when the run finishes")
    return write_report(run_dir)


def compare_page(runs_dir: Path, run_a: Path, run_b: Path) -> Path:
    """`RUNS_DIR/compare-<A>-vs-<B>.html`, as `posttrain compare A B` writes it."""
    page = runs_dir / f"compare-{run_a.name}-vs-{run_b.name}.html"
    if page.is_file() and page.stat().st_mtime >= _newest(_inputs(RunDir(run_a)) + _inputs(RunDir(run_b))):
        return page
    return write_compare(run_a, run_b, runs_dir)
