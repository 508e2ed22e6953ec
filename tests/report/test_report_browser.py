"""The report, compare page and HTML board in headless Chromium: what a person would see, with no JS errors."""

from __future__ import annotations

import re
from pathlib import Path

from posttrain.leaderboard.store import LEADERBOARD_DB, record
from posttrain.report import write_compare, write_report
from posttrain.report.board import write_board_html


def _shown_plots(dom: str) -> list[str]:
    return re.findall(r'<img class="plot"[^>]*data-shown="([^"]+)"', dom)


def test_report_renders_every_section(fake_run: Path, tmp_path: Path, browser) -> None:
    page = write_report(fake_run)
    dom, log = browser.dump_dom(page.as_uri())
    assert 'data-ready="yes"' in dom, "the page's script did not finish"
    assert '<div id="js-errors"></div>' in dom and browser.console_errors(log) == []
    shown = _shown_plots(dom)
    assert len(shown) == 6 and "broken" not in shown
    assert all(int(w) > 300 and int(h) > 100 for w, h in (s.split("x") for s in shown))
    eval_table = dom.split('<section id="eval">')[1].split("</table>")[0]
    for label in ("base", "sft", "distill", "dpo", "grpo"):
        assert f"<td>{label}</td>" in eval_table
    answers = dom.split('<section id="answers">')[1].split("</section>")[0]
    assert answers.count('<div class="doc">') == 4 and answers.count('<tr class="answer">') == 4 * 5
    shot = browser.screenshot(page.as_uri(), tmp_path / "report.png")
    assert shot.stat().st_size > 50_000  # a blank page of this size is a few kB


def test_compare_page_pairs_two_runs(fake_run: Path, tmp_path: Path, browser, make_fake_run) -> None:
    other = make_fake_run(fake_run.parent, name="other")
    page = write_compare(fake_run, other, tmp_path)
    dom, log = browser.dump_dom(page.as_uri())
    assert '<div id="js-errors"></div>' in dom and browser.console_errors(log) == []
    paired = dom.split('<section id="paired">')[1].split("</table>")[0]
    assert paired.count("<tr>") == 1 + 5  # header + base and four same-named stages
    assert "within noise" in paired  # identical runs: no difference anywhere
    assert "<td>fake/grpo</td>" in dom and "<td>other/grpo</td>" in dom


def test_board_lists_every_run_and_filters_by_task(fake_run: Path, tmp_path: Path, browser) -> None:
    runs = fake_run.parent
    write_report(fake_run)
    db = runs / LEADERBOARD_DB
    record(db, "fake", "base", "m", {"pt_arith": 0.1, "pt_arith_mc": 0.3}, "f0", "2026-01-01T00:00:00")
    record(db, "fake", "sft", "m", {"pt_arith": 0.5}, "f1", "2026-01-01T00:00:00")
    record(db, "elsewhere", "grpo", "m", {"pt_arith_mc": 0.9}, "f2", "2026-01-02T00:00:00")
    from posttrain.leaderboard.store import top

    page = write_board_html(top(db), runs)
    dom, log = browser.dump_dom(page.as_uri())
    assert '<div id="js-errors"></div>' in dom and browser.console_errors(log) == []
    rows = re.findall(r"<tr data-tasks=[^>]*>", dom)
    assert len(rows) == 3
    assert '<a href="fake/report.html">fake</a>' in dom  # a run with a report links to it
    filtered, _ = browser.dump_dom(page.as_uri() + "#task=pt_arith_mc")
    hidden = re.findall(r'<tr data-tasks="([^"]*)" style="display: none;">', filtered)
    assert hidden == ["pt_arith"]  # fake/sft has no pt_arith_mc score


def test_a_script_error_shows_up_where_the_checks_look(tmp_path: Path, browser) -> None:
    from posttrain.report.page import render_html
    from posttrain.report.sections import Section

    page = tmp_path / "broken.html"
    page.write_text(render_html("t", "s", [Section("x", "x", "<p>x</p>", "x")]).replace(
        "</script>", "</script><script>notDefined();</script>"))
    dom, log = browser.dump_dom(page.as_uri())
    assert "error: Uncaught ReferenceError: notDefined is not defined" in dom
    assert browser.console_errors(log)
