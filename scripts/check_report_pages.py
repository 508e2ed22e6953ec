"""Open every page of a workspace's runs in headless Chromium and check what a reader would see.

    python scripts/check_report_pages.py WORKSPACE [--screenshot DIR]

WORKSPACE holds `runs/` (or is the runs folder). Checked: `runs/leaderboard.html` (write it
first with `posttrain leaderboard --format html`) and every `runs/<run>/report.html`. Prints
one line per page with the sections found, then each problem; exits 1 when a page has one,
2 when the workspace or Chromium is missing. With `--screenshot DIR`, a PNG of each page.

A report passes when the page's script ran without an error, every section is there and not
empty (stage graph, data, training curves with a drawn plot per trained stage, the eval table
with base and every evaluated stage, held-out objectives, answers side by side with every
model's answer, exports; where artifacts were scored in their engines, per such stage a table
starting with the merged model, each artifact a row or a note, and a quality-vs-size plot),
and every plot decoded. The board passes when it lists every
evaluated model of every run with a report, its run links open existing files, and the task
filter shows exactly the rows scored on the chosen task.

Standard library only, so any Python runs it; tests/report uses these functions too.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

REPORT_SECTIONS = {
    "graph": "Stages", "data": "Data", "curves": "Training curves", "eval": "Evaluation",
    "objectives": "Held-out objectives", "answers": "Answers side by side", "exports": "Exports",
}
"""Section id → heading, in reading order: what every run report shows."""

WIDTH = 1400
"""Window width the pages are laid out at, for the DOM checks and the screenshots alike."""

MIN_PLOT = (300, 100)
"""Smallest decoded plot size (width, height) that is a drawn figure rather than a broken stub."""

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
          "--disable-background-networking", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def find_chromium() -> str | None:
    """The first Chromium or Chrome on PATH."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


class Browser:
    """Headless Chromium, offline, with its own profile: the DOM after the page's scripts ran, screenshots."""

    def __init__(self, profile: Path, executable: str | None = None) -> None:
        self.profile = profile
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.executable, *_FLAGS, f"--user-data-dir={self.profile}", *args],
                              capture_output=True, text=True, timeout=120, check=True)

    def dump_dom(self, url: str) -> tuple[str, str]:
        """(DOM after load, the browser's log)."""
        done = self._run(f"--window-size={WIDTH},1000", "--dump-dom", url)
        return done.stdout, done.stderr

    def screenshot(self, url: str, out: Path, size: str = f"{WIDTH},2400") -> Path:
        """A PNG of the page's first `size` pixels (width,height)."""
        out.parent.mkdir(parents=True, exist_ok=True)
        self._run("--hide-scrollbars", f"--window-size={size}", f"--screenshot={out}", url)
        return out

    @staticmethod
    def console_errors(log: str) -> list[str]:
        """Lines where the page's JavaScript failed (uncaught errors, console.error)."""
        return [line for line in log.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]


@dataclass
class PageCheck:
    """What one page showed: section → a short summary of its content, and what is wrong with the page."""

    page: Path
    found: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)
    """The board's (run, stage) rows, in order; empty for a report."""
    height: int = 2400
    """The page's full height in pixels at WIDTH, as its script measured it (for a whole-page screenshot)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line: the page, ok or how many problems, the sections found with what each holds."""
        sections = "; ".join(f"{name} ({summary})" if summary else name for name, summary in self.found.items())
        verdict = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{self.page}: {verdict} | {sections or 'no sections'}"


def sections_of(dom: str) -> dict[str, str]:
    """Section id → its inner HTML, from the DOM Chromium serialized (sections do not nest)."""
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', dom, re.S))


def table_rows(section_html: str, css: str) -> list[list[str]]:
    """The body rows of `<table class=css>` as lists of cell texts (tags stripped)."""
    match = re.search(rf'<table class="{css}">.*?<tbody>(.*?)</tbody>', section_html, re.S)
    if match is None:
        return []
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", match.group(1), re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S)] for r in rows]


def shown_plots(section_html: str) -> list[tuple[str, str]]:
    """(alt text, decoded size `WxH` or `broken`) of each plot, as the page's script recorded them."""
    out = []
    for tag in re.findall(r'<img class="plot"[^>]*>', section_html):
        alt = re.search(r'alt="([^"]*)"', tag)
        shown = re.search(r'data-shown="([^"]*)"', tag)
        out.append((alt.group(1) if alt else "", shown.group(1) if shown else "not loaded"))
    return out


def _plot_problem(alt: str, shown: str) -> str | None:
    size = re.fullmatch(r"(\d+)x(\d+)", shown)
    if size is None:
        return f"plot '{alt}' is {shown}"
    if int(size.group(1)) < MIN_PLOT[0] or int(size.group(2)) < MIN_PLOT[1]:
        return f"plot '{alt}' is only {shown}"
    return None


def _page_height(dom: str) -> int:
    found = re.search(r'data-height="(\d+)"', dom)
    return min(max(int(found.group(1)), 600), 20000) if found else 2400


def _page_problems(dom: str, log: str) -> list[str]:
    problems = []
    if 'data-ready="yes"' not in dom:
        problems.append("the page's script did not finish")
    errors = re.search(r'<div id="js-errors">(.*?)</div>', dom, re.S)
    if errors is None or errors.group(1).strip():
        problems.append(f"script errors on the page: {errors.group(1).strip() if errors else 'no error box'}")
    problems += [f"browser console: {line.strip()}" for line in Browser.console_errors(log)]
    return problems


def _measured_objective(stage_dir: Path) -> bool:
    """Whether the stage's objective.json holds a measurement (it holds null without held-out rows)."""
    try:
        return bool(json.loads((stage_dir / "objective.json").read_text(encoding="utf-8")).get("objective"))
    except (OSError, ValueError, AttributeError):
        return False


def check_report(browser: Browser, page: Path) -> PageCheck:
    """Every section of one run's report.html, as Chromium renders it."""
    check = PageCheck(page)
    run_dir = page.parent
    dom, log = browser.dump_dom(page.resolve().as_uri())
    check.problems += _page_problems(dom, log)
    check.height = _page_height(dom)
    sections = sections_of(dom)
    for sid, title in REPORT_SECTIONS.items():
        body = sections.get(sid)
        if body is None:
            check.problems.append(f"section '{title}' is missing")
        elif f"<h2>{title}</h2>" not in body:
            check.problems.append(f"section '{sid}' has no heading '{title}'")
        elif '<p class="error">' in body:
            message = re.sub(r"<[^>]+>", "", body.split('<p class="error">', 1)[1])[:200]
            check.problems.append(f"section '{title}': {message}")
    for body in sections.values():
        check.problems += [p for alt, shown in shown_plots(body) if (p := _plot_problem(alt, shown))]

    stages = [row[0] for row in table_rows(sections.get("graph", ""), "stages")]
    latest = [row[5] for row in table_rows(sections.get("graph", ""), "stages") if len(row) > 5]
    if not stages:
        check.problems.append("the stage graph lists no stage")
    check.found["Stages"] = ", ".join(f"{s}: {w}" for s, w in zip(stages, latest, strict=False))

    data = sections.get("data", "")
    datasets = re.findall(r"<h3>([^<]*)</h3>", data)
    if not datasets or not table_rows(data, "data"):
        check.problems.append("the data section shows no curated dataset")
    check.found["Data"] = f"{len(datasets)} datasets"

    curves = {alt.removeprefix("training curves of ") for alt, _ in shown_plots(sections.get("curves", ""))}
    missing = [s for s in stages if s not in curves]
    if missing:
        check.problems.append(f"no training curves for {', '.join(missing)}")
    check.found["Training curves"] = f"{len(curves)} plots"

    evaluated = ["base"] * (run_dir / "base" / "eval.json").exists() + [s for s in stages if (run_dir / s / "eval.json").exists()]
    models = [row[0] for row in table_rows(sections.get("eval", ""), "eval")]
    if not models or [m for m in evaluated if m not in models]:
        check.problems.append(f"the eval table shows {models}, evaluated were {evaluated}")
    check.found["Evaluation"] = f"{len(models)} models"

    objectives = table_rows(sections.get("objectives", ""), "objectives")
    measured = [s for s in stages if _measured_objective(run_dir / s)]
    without = [s for s in measured if s not in {row[0] for row in objectives}]
    if without:
        check.problems.append(f"held-out objectives measured but not shown for {', '.join(without)}")
    elif not objectives:
        check.problems.append("no held-out objective measured (a dataset's eval_split gives the held-out rows)")
    check.found["Held-out objectives"] = f"{len(objectives)} rows"

    answers = sections.get("answers", "")
    docs = re.findall(r'<div class="doc">(.*?)</table></div>', answers, re.S)
    short = [i for i, doc in enumerate(docs) if doc.count('<tr class="answer">') != len(models)]
    if not docs or short:
        check.problems.append(f"answers side by side: {len(docs)} documents, {len(short)} without every model's answer")
    check.found["Answers side by side"] = f"{len(docs)} documents × {len(models)} models"

    exports = table_rows(sections.get("exports", ""), "exports")
    unlisted = [s for s in stages if s not in {row[0] for row in exports}]
    if not any(row[1] != "none" for row in exports) or unlisted:
        check.problems.append(f"exports: {len(exports)} rows, stages not listed: {', '.join(unlisted) or '-'}")
    check.found["Exports"] = ", ".join(f"{row[0]} {row[1]}" for row in exports)
    scored = scored_on_disk(run_dir)
    if scored:
        problems, summary = _check_scored(sections.get("exports", ""), scored)
        check.problems += problems
        check.found["Exports"] += f"; scored in their engines: {summary}"
    present = {title for sid, title in REPORT_SECTIONS.items() if sid in sections}
    check.found = {title: summary for title, summary in check.found.items() if title in present}  # what the page has
    return check


def scored_on_disk(run_dir: Path) -> dict[str, list[str]]:
    """Stage → its artifacts scored in their engine (`<stage>/export/scored/<artifact>/artifact.json`)."""
    out: dict[str, list[str]] = {}
    for record in sorted(run_dir.glob("*/export/scored/*/artifact.json")):
        out.setdefault(record.parents[3].name, []).append(record.parent.name)
    return out


def _check_scored(exports: str, scored: dict[str, list[str]]) -> tuple[list[str], str]:
    """The Exports section of a run with scored artifacts: per stage a table starting with the merged model, a row
    per artifact (or a note naming one whose files could not be read), and its quality-vs-size plot drawn."""
    problems = []
    tables = re.findall(r"<h3>([^<]*)</h3>\s*(<table class=\"scored\">.*?</table>)(.*?)(?=<h3>|$)", exports, re.S)
    by_stage = {title.split(":", 1)[0]: (table, after) for title, table, after in tables}
    plots = {alt.removeprefix("quality vs size of "): shown for alt, shown in shown_plots(exports)}
    for stage, artifacts in scored.items():
        if stage not in by_stage:
            problems.append(f"exports: no table of the artifacts of {stage} scored in their engines")
            continue
        table, after = by_stage[stage]
        rows = [row[0] for row in table_rows(table, "scored")]
        notes = re.sub(r"<[^>]+>", " ", after)
        if not rows or rows[0] != "merged":
            problems.append(f"exports: the table of {stage} does not start with the merged model (rows {rows})")
        unshown = [a for a in artifacts if a not in rows and f"{a}:" not in notes]
        if unshown:
            problems.append(f"exports: {stage}'s artifacts {', '.join(unshown)} are neither rows nor notes")
        if stage not in plots and len(rows) > 1:
            problems.append(f"exports: no quality-vs-size plot for {stage}")
    summary = ", ".join(f"{stage}: {', '.join(artifacts)}" for stage, artifacts in scored.items())
    return problems, summary


def check_board(browser: Browser, page: Path) -> PageCheck:
    """The cross-run board: every run with a report listed, its links open files, the task filter works."""
    check = PageCheck(page)
    runs_dir = page.parent
    dom, log = browser.dump_dom(page.resolve().as_uri())
    check.problems += _page_problems(dom, log)
    check.height = _page_height(dom)
    body = re.search(r'<table class="board">.*?<tbody>(.*?)</tbody>', dom, re.S)
    rows = re.findall(r'<tr data-tasks="([^"]*)"[^>]*>(.*?)</tr>', body.group(1) if body else "", re.S)
    for _, cells in rows:
        texts = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)]
        check.rows.append((texts[1], texts[2]))
    if not rows:
        check.problems.append("the board has no rows")
    reports = sorted(p.parent.name for p in runs_dir.glob("*/report.html"))
    listed = {run for run, _ in check.rows}
    check.problems += [f"run {run} has a report but no row on the board" for run in reports if run not in listed]
    links = re.findall(r'<a href="([^"]+)">', body.group(1) if body else "")
    broken = [link for link in links if not (page.parent / unquote(urlparse(link).path)).is_file()]
    check.problems += [f"link {link} opens no file" for link in broken]
    check.found["board"] = f"{len(rows)} rows from runs {', '.join(sorted(listed))}; {len(set(links))} report links"

    tasks = re.findall(r'<option value="([^"]+)">', dom)
    for task in tasks:
        filtered, _ = browser.dump_dom(page.resolve().as_uri() + f"#task={task}")
        shown = re.findall(r'<tr data-tasks="([^"]*)"(?: style="")?>', filtered)
        hidden = re.findall(r'<tr data-tasks="([^"]*)" style="display: none;">', filtered)
        wrong = [t for t in shown if task not in t.split()] + [t for t in hidden if task in t.split()]
        if len(shown) + len(hidden) != len(rows) or wrong or not shown:
            check.problems.append(f"filter {task}: {len(shown)} rows shown, {len(hidden)} hidden, {len(wrong)} wrongly")
    check.found["filter"] = f"{len(tasks)} tasks" if tasks else "no task filter"
    if not tasks:
        check.problems.append("the board has no task filter")
    return check


def check_workspace(workspace: Path, browser: Browser, screenshots: Path | None = None) -> list[PageCheck]:
    """The board, then every run's report; with `screenshots`, a PNG of each page there."""
    runs_dir = workspace / "runs" if (workspace / "runs").is_dir() else workspace
    board = runs_dir / "leaderboard.html"
    checks = []
    if board.exists():
        checks.append(check_board(browser, board))
    else:
        checks.append(PageCheck(board, problems=["missing: run `posttrain leaderboard --format html` first"]))
    reports = sorted(runs_dir.glob("*/report.html"))
    checks += [check_report(browser, page) for page in reports]
    if not reports:
        checks.append(PageCheck(runs_dir / "*" / "report.html", problems=["no run report in this workspace"]))
    if screenshots is not None:
        for check in checks:
            if check.page.exists():
                name = "leaderboard" if check.page == board else check.page.parent.name
                browser.screenshot(check.page.resolve().as_uri(), screenshots / f"{name}.png",
                                   size=f"{WIDTH},{check.height}")
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path, help="a folder holding runs/, or the runs folder")
    parser.add_argument("--screenshot", type=Path, metavar="DIR", help="write a PNG of each page into DIR")
    args = parser.parse_args(argv)
    if not args.workspace.is_dir():
        print(f"{args.workspace}: no such folder", file=sys.stderr)
        return 2
    if find_chromium() is None:
        print("no chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    import tempfile

    with tempfile.TemporaryDirectory(prefix="check-pages-") as profile:
        checks = check_workspace(args.workspace, Browser(Path(profile)), args.screenshot)
    for check in checks:
        print(check.line())
        for problem in check.problems:
            print(f"    problem: {problem}")
    if args.screenshot:
        print(f"screenshots: {args.screenshot}")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
