"""The report tells what the latest run did with each stage, read back from stage.json by a later `posttrain report`.

One tiny sft → dpo recipe run four times in one workspace: trained, all reused from
cache, dpo forced, dpo changed. After each, the report (written by the run, or again by
`posttrain report` through the CLI) says per stage trained / cached / retrained and why.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.console import Console

from posttrain.pipeline.runner import run_recipe
from posttrain.recipe.loader import load_recipe


def _latest(md: str, stage: str) -> str:
    """The 'latest run' cell of `stage`'s row in report.md's stage table."""
    row = re.search(rf"^\| {stage} \| [^|]+ \| [^|]+ \| [^|]+ \| [^|]+ \| ([^|]+) \|", md, re.M)
    assert row, md
    return row.group(1).strip()


def _history(run_dir: Path, stage: str) -> list[tuple[str, str]]:
    history = json.loads((run_dir / stage / "stage.json").read_text())["history"]
    return [(h["outcome"], h.get("planned", "")) for h in history]


def test_report_says_trained_cached_forced_or_changed_per_stage(tmp_path: Path, tiny_model_dir: Path,
                                                                 workspace_kit: dict) -> None:
    recipe = workspace_kit["write"](tmp_path, tiny_model_dir)["pairs"]
    runs = tmp_path / "runs"
    run_dir = runs / "pairs"

    def run(overrides: list[str] | None = None, force: set[str] | None = None) -> str:
        run_recipe(load_recipe(recipe, overrides), runs_dir=runs, force=force, console=Console(quiet=True))
        return (run_dir / "report.md").read_text()

    first = run()
    assert re.fullmatch(r"trained in \d+ s", _latest(first, "sft")) and re.fullmatch(r"trained in \d+ s", _latest(first, "dpo"))
    first_run = json.loads((run_dir / "sft" / "stage.json").read_text())["history"][0]["run"]

    run()  # everything reused; then the report is written again later, by the CLI, from the files alone
    (run_dir / "report.md").unlink()
    (run_dir / "report.html").unlink()
    reported = workspace_kit["cli"]("report", "pairs", cwd=tmp_path)
    assert reported.returncode == 0, reported.stdout + reported.stderr
    md = (run_dir / "report.md").read_text()
    assert _latest(md, "sft") == _latest(md, "dpo") == "cached (reused)"
    shown_first = first_run.replace("T", " ")[:19] + " UTC"
    assert f"{shown_first}: trained<br>" in md  # the history names the run that trained the weights
    assert _history(run_dir, "sft") == _history(run_dir, "dpo") == [("trained", "run"), ("cached", "")]
    page = (run_dir / "report.html").read_text()
    stage_table = page.split("<table class='stages'>")[1].split("</table>")[0]
    assert stage_table.count("<td>cached (reused)</td>") == 2 and "<td>trained" not in stage_table

    forced = run(force={"dpo"})
    assert _latest(forced, "sft") == "cached (reused)"
    assert re.fullmatch(r"trained \(--force\) in \d+ s", _latest(forced, "dpo"))
    assert _history(run_dir, "dpo") == [("trained", "run"), ("cached", ""), ("trained", "forced")]

    changed = run(overrides=["stages.dpo.beta=0.3"])
    assert _latest(changed, "sft") == "cached (reused)"
    assert re.fullmatch(r"retrained \(changed or unfinished before\) in \d+ s", _latest(changed, "dpo"))
    assert _history(run_dir, "sft") == [("trained", "run")] + [("cached", "")] * 3
