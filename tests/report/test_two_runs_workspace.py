"""Two different recipes run into one workspace, as a user would; every page they leave renders in Chromium.

sft → dpo and sft → grpo → distill share the workspace's SQLite board. `posttrain
leaderboard --format html` (through the CLI) and each run's report.html are checked by
scripts/check_report_pages.py's own functions: every section there and filled, every plot
drawn, the board listing both runs' models and linking to existing reports, the task
filter showing the right rows, and no script error in the browser's console.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrain.report.collect import read_run
from posttrain.report.plots import stage_panels

pytestmark = pytest.mark.slow

STAGES = {"pairs": ["sft", "dpo"], "rl": ["sft", "grpo", "distill"]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, workspace_kit: dict) -> Path:
    folder = tmp_path_factory.mktemp("workspace")
    recipes = workspace_kit["write"](folder, tiny_model_dir)
    for name in STAGES:
        done = workspace_kit["cli"]("run", recipes[name].name, cwd=folder)
        assert done.returncode == 0, done.stdout + done.stderr
    board = workspace_kit["cli"]("leaderboard", "--format", "html", cwd=folder)
    assert board.returncode == 0 and "runs/leaderboard.html" in board.stdout, board.stdout + board.stderr
    return folder


def test_board_and_both_reports_render_with_every_section(workspace: Path, workspace_kit: dict, browser,
                                                          tmp_path: Path) -> None:
    pages = workspace_kit["pages"]
    checks = pages.check_workspace(workspace, browser, screenshots=tmp_path / "shots")
    by_page = {c.page.relative_to(workspace).as_posix(): c for c in checks}
    assert set(by_page) == {"runs/leaderboard.html", "runs/pairs/report.html", "runs/rl/report.html"}
    for check in checks:
        assert check.ok, check.line() + "\n" + "\n".join(check.problems)

    board = by_page["runs/leaderboard.html"]
    expected = {(run, stage) for run, stages in STAGES.items() for stage in ["base", *stages]}
    assert sorted(board.rows) == sorted(expected)  # every evaluated model of both runs, once
    assert board.found["filter"] == "2 tasks"  # pairs evaluates pt_arith_mc only, rl also pt_arith

    for run, stages in STAGES.items():
        report = by_page[f"runs/{run}/report.html"]
        assert list(report.found) == list(pages.REPORT_SECTIONS.values())
        for stage in stages:
            assert f"{stage}: trained in " in report.found["Stages"]
        assert report.found["Training curves"] == f"{len(stages)} plots"
        assert report.found["Evaluation"] == f"{len(stages) + 1} models"
    assert by_page["runs/rl/report.html"].found["Exports"] == "sft peft, grpo peft, distill none"

    # The stage types' own signals, as TRL logs them today, reach their panels.
    panels = {(run, s.name): [title for title, _ in stage_panels(s.panels, s.curves)]
              for run in STAGES for s in read_run(workspace / "runs" / run).stages}
    assert panels[("pairs", "dpo")][3:] == ["reward margin (chosen − rejected)", "preference accuracy"]
    assert panels[("rl", "grpo")][3:] == ["reward (total and per function)", "completion length (mean tokens)"]
    assert panels[("rl", "distill")][3:] == ["loss parts (kd: divergence to teacher, ce: next token)"]
    assert "no KL logged (beta 0: no reference model)" in (workspace / "runs" / "rl" / "report.md").read_text()

    for name in ("leaderboard", "pairs", "rl"):
        shot = tmp_path / "shots" / f"{name}.png"
        assert shot.stat().st_size > 40_000, name  # a blank page this size is a few kB


def test_the_script_finds_what_a_broken_page_lacks(workspace: Path, workspace_kit: dict, browser,
                                                   tmp_path: Path) -> None:
    pages = workspace_kit["pages"]
    report = workspace / "runs" / "pairs" / "report.html"
    html = report.read_text()
    broken = tmp_path / "runs" / "pairs" / "report.html"
    broken.parent.mkdir(parents=True)
    # Drop the answers section, break one plot, and add a script error: each must be named.
    start = html.index("<section id='answers'>")
    html = html[:start] + html[html.index("</section>", start) + len("</section>"):]
    html = html.replace("src='data:image/png;base64,", "src='data:image/png;base64,AAAA", 1)
    html = html.replace("</body>", "<script>window.missingFunction();</script></body>")
    broken.write_text(html)
    check = pages.check_report(browser, broken)
    assert not check.ok
    problems = "\n".join(check.problems)
    assert "section 'Answers side by side' is missing" in problems
    assert "plot 'token lengths of chat' is broken" in problems
    assert "script errors on the page" in problems and "browser console" in problems
    assert "Answers side by side" not in check.found and "Exports" in check.found
    assert pages.main([str(tmp_path)]) == 1
